//! The console in a real browser: Debian's headless Chromium, driven over the DevTools
//! protocol (headless_chrome), loads the page from `atoll serve` over a real sandbox (2
//! islands of a master and a replica, 6 shards, one deactivated) and the test checks what
//! a user sees: one column per island, one tile per shard schema with its state, node cards
//! with their roles, the live marker set by a server-sent event, a search typed with the
//! keyboard and its highlighted tile, then a shard deactivated on its island turning grey
//! on the open page without a reload.
//!
//! With `ATOLL_CONSOLE_SCREENSHOTS=DIR` it also writes `console-overview.png` and
//! `console-narrow.png` there (how the screenshots under docs/ are made).

use atoll_core::ShardNo;
use atoll_serve::{start, ServeConfig};
use atoll_testkit::TestCluster;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use std::path::PathBuf;
use std::time::Duration;

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser(width: u32, height: u32) -> Browser {
    let options = LaunchOptions::default_builder()
        .path(Some(PathBuf::from(CHROMIUM)))
        .headless(true)
        .sandbox(false)
        .window_size(Some((width, height)))
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .expect("launch options");
    Browser::new(options).expect("chromium starts (scripts/install-deps installs it)")
}

/// The page's text content of `selector`, once `pred` holds for it (20 s at most).
fn wait_text(tab: &Tab, selector: &str, pred: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = eval(
            tab,
            &format!("document.querySelector({selector:?})?.innerText ?? ''"),
        )
        .as_str()
        .unwrap_or_default()
        .to_string();
        if pred(&text) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{selector}: still {text:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of a JavaScript expression on the page (queried afresh each time: the DOM is
/// re-rendered by every event).
fn eval(tab: &Tab, js: &str) -> serde_json::Value {
    tab.evaluate(js, false)
        .ok()
        .and_then(|r| r.value)
        .unwrap_or(serde_json::Value::Null)
}

fn count(tab: &Tab, selector: &str) -> usize {
    eval(
        tab,
        &format!("document.querySelectorAll({selector:?}).length"),
    )
    .as_u64()
    .unwrap_or(0) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_the_cluster_searches_and_follows_changes_in_chromium() {
    let tc = TestCluster::setup(2, 1)
        .shards(1..=6)
        .start()
        .await
        .expect("sandbox");
    let snap = tc.discover().await;
    let island_of = |n: i64| snap.active_island(ShardNo::new(n).unwrap()).unwrap();
    let (two, four) = (island_of(2), island_of(4));
    tc.master(two)
        .await
        .unwrap()
        .execute(
            "update atoll.shards set active = false where shard = 2",
            &[],
        )
        .await
        .unwrap();
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), tc.config().clone());
    config.period = Duration::from_millis(200);
    let handle = start(config).await.expect("atoll serve starts");
    let base = format!("http://{}", handle.addr);

    let page = base.clone();
    let (browser, tab) = tokio::task::spawn_blocking(move || {
        let browser = browser(1280, 800);
        let tab = browser.new_tab().unwrap();
        tab.navigate_to(&page).unwrap();
        wait_text(&tab, "#live", |t| t == "live");
        assert_eq!(count(&tab, "article.island"), 2);
        assert_eq!(count(&tab, ".tile"), 6, "one tile per shard schema");
        assert_eq!(count(&tab, ".tile.inactive"), 1);
        assert_eq!(count(&tab, ".tile.active"), 5);
        assert_eq!(count(&tab, ".tile.inactive[data-shard=\"2\"]"), 1);
        let cards = wait_text(&tab, "#islands", |t| t.contains("replica"));
        assert_eq!(cards.matches("master").count(), 2, "{cards}");
        assert_eq!(cards.matches("replica").count(), 2, "{cards}");
        wait_text(&tab, "#moves", |t| t.contains("no unfinished moves"));
        // The search, by keyboard: focus the box, type, press Enter.
        tab.find_element("#q").unwrap().click().unwrap();
        tab.type_str("sh0004").unwrap().press_key("Enter").unwrap();
        let said = wait_text(&tab, "#located", |t| !t.is_empty());
        assert_eq!(
            said,
            format!("sh0004 → shard 4 (sh0004): active on island {four}")
        );
        assert_eq!(count(&tab, ".tile.found[data-shard=\"4\"]"), 1);
        // A malformed query is answered by name, not by a broken page.
        tab.find_element("#q").unwrap().click().unwrap();
        tab.press_key("End").unwrap();
        tab.type_str("x").unwrap().press_key("Enter").unwrap();
        let said = wait_text(&tab, "#located", |t| t.starts_with("q: "));
        assert!(said.contains("sh0004x"), "{said}");
        (browser, tab)
    })
    .await
    .unwrap();

    // A change on the islands reaches the open page through the event stream.
    let t = std::time::Instant::now();
    tc.master(four)
        .await
        .unwrap()
        .execute(
            "update atoll.shards set active = false where shard = 4",
            &[],
        )
        .await
        .unwrap();
    let (browser, tab) = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while count(&tab, ".tile.inactive[data-shard=\"4\"]") == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "shard 4 still active on the page"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        (browser, tab)
    })
    .await
    .unwrap();
    eprintln!(
        "the page showed the change {:?} after its commit",
        t.elapsed()
    );

    if let Some(dir) = std::env::var_os("ATOLL_CONSOLE_SCREENSHOTS") {
        screenshots(PathBuf::from(dir), &base).await;
    }
    drop((tab, browser));
    handle.shutdown().await;
}

async fn screenshots(dir: PathBuf, base: &str) {
    let page = format!("{base}/?q=sh0003");
    tokio::task::spawn_blocking(move || {
        for (name, (w, h)) in [
            ("console-overview.png", (1280, 720)),
            ("console-narrow.png", (420, 900)),
        ] {
            let b = browser(w, h);
            let tab = b.new_tab().unwrap();
            tab.navigate_to(&page).unwrap();
            wait_text(&tab, "#live", |t| t == "live");
            wait_text(&tab, "#located", |t| !t.is_empty());
            let png = tab
                .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
                .unwrap();
            std::fs::write(dir.join(name), png).unwrap();
        }
    })
    .await
    .unwrap();
}
