//! The console in a real browser: Debian's headless Chromium, driven over the DevTools
//! protocol (headless_chrome), loads the page from `atoll serve` over a real sandbox (2
//! islands of a master and a replica, 6 shards, one deactivated) and the test checks what
//! a user sees: one column per island, one tile per shard schema with its state, node cards
//! with their roles, the live marker set by a server-sent event, a search typed with the
//! keyboard and its highlighted tile, then a shard deactivated on its island turning grey
//! on the open page without a reload.
//!
//! A second test acts from the page: the write token typed in, a migration plan showing
//! its group, a move started with the typed confirmation, its progress on the page while
//! it runs, and its tile ending on the other island with the action log saying who did it.
//!
//! With `ATOLL_CONSOLE_SCREENSHOTS=DIR` it also writes `console-overview.png`,
//! `console-narrow.png` and `console-actions.png` there (how the screenshots under docs/
//! are made).

use atoll_core::{IslandId, ShardNo};
use atoll_serve::{start, ServeConfig, WriteToken};
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

const TOKEN: &str = "console-token-0123456789";

/// Clicks `selector` and types `text` into it.
fn type_into(tab: &Tab, selector: &str, text: &str) {
    tab.find_element(selector).unwrap().click().unwrap();
    tab.type_str(text).unwrap();
}

fn wait_count(tab: &Tab, selector: &str, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while count(tab, selector) != n {
        assert!(std::time::Instant::now() < deadline, "{selector}: not {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_started_from_the_console_runs_live_and_ends_on_the_other_island() {
    let tc = TestCluster::setup(2, 0)
        .shards(1..=4)
        .on_island(IslandId(0))
        .start()
        .await
        .expect("sandbox");
    let dir = tc.config_path().parent().unwrap().join("migrations");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("20260102000000.notes.sh.up.sql"),
        "create table notes (id bigint primary key);",
    )
    .unwrap();
    std::fs::write(
        dir.join("20260102000000.notes.sh.dn.sql"),
        "drop table notes;",
    )
    .unwrap();
    // Enough rows that the copy takes a moment the page can show.
    tc.on_each_shard(&[ShardNo::new(1).unwrap()], |s| {
        format!(
            "create table {s}.big as select g as id, repeat('x', 200) as pad \
             from generate_series(1, 100000) g; alter table {s}.big add primary key (id)"
        )
    })
    .await
    .unwrap();
    std::env::set_var("ATOLL_CONSOLE_TOKEN", TOKEN);
    let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), tc.config().clone());
    config.period = Duration::from_millis(200);
    config.write_tokens = vec!["carol=env:ATOLL_CONSOLE_TOKEN"
        .parse::<WriteToken>()
        .unwrap()];
    config.migrations = Some(dir);
    let handle = start(config).await.expect("atoll serve starts");
    let page = format!("http://{}", handle.addr);
    let shots = std::env::var_os("ATOLL_CONSOLE_SCREENSHOTS").map(PathBuf::from);

    let seen = tokio::task::spawn_blocking(move || {
        let browser = browser(1280, 1000);
        let tab = browser.new_tab().unwrap();
        tab.navigate_to(&page).unwrap();
        wait_text(&tab, "#live", |t| t == "live");
        type_into(&tab, "#token", TOKEN);
        // The migration plan: one group of the four shards.
        tab.find_element("#migrate-plan").unwrap().click().unwrap();
        let groups = wait_text(&tab, "#plan-groups tbody", |t| !t.is_empty());
        assert!(groups.contains("20260102000000.notes.sh") && groups.contains('4'), "{groups}");
        // A move: shard 1 to island 1, confirmed by typing its schema's name.
        type_into(&tab, "#move-shard", "1");
        eval(&tab, "document.getElementById('move-to').value = '1'");
        tab.find_element("#move-form button").unwrap().click().unwrap();
        assert_eq!(eval(&tab, "document.getElementById('confirm').open"), true);
        assert_eq!(eval(&tab, "document.getElementById('confirm-ok').disabled"), true);
        type_into(&tab, "#confirm-input", "sh0001");
        tab.find_element("#confirm-ok").unwrap().click().unwrap();
        // While it runs, the page shows it (the moves table or the running action).
        let mut progress = Vec::new();
        let done = "article[aria-label=\"island 1\"] .tile.active[data-shard=\"1\"]";
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while count(&tab, done) == 0 {
            assert!(std::time::Instant::now() < deadline, "sh0001 never reached island 1");
            let row = eval(&tab, "document.querySelector('#moves tr[data-shard=\"1\"] td:nth-child(3)')?.innerText ?? ''");
            if let Some(t) = row.as_str().filter(|t| !t.is_empty()) {
                if progress.last().map(String::as_str) != Some(t) {
                    progress.push(t.to_string());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(count(&tab, ".tile[data-shard=\"1\"]"), 1, "one copy left");
        wait_count(&tab, "#log tr[data-outcome=\"succeeded\"]", 1);
        let log = wait_text(&tab, "#log", |t| t.contains("carol"));
        assert!(log.contains("move sh0001 to island 1"), "{log}");
        let result = wait_text(&tab, "#act-result", |t| t.contains("succeeded"));
        assert!(result.contains("writes paused"), "{result}");
        // The reviewed migration plan applied from the page: the run's states show.
        tab.find_element("#migrate-plan").unwrap().click().unwrap();
        wait_text(&tab, "#plan-groups tbody", |t| t.contains("sh0001-sh0004"));
        tab.find_element("#migrate-apply").unwrap().click().unwrap();
        type_into(&tab, "#confirm-input", "apply");
        tab.find_element("#confirm-ok").unwrap().click().unwrap();
        let run = wait_text(&tab, "#migration", |t| t.contains("done · 4 of 4"));
        assert!(run.contains("sh0001-sh0004"), "{run}");
        if let Some(dir) = shots {
            let png = tab
                .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
                .unwrap();
            std::fs::write(dir.join("console-actions.png"), png).unwrap();
        }
        progress
    })
    .await
    .unwrap();
    eprintln!("the page showed the move's steps: {seen:?}");
    assert!(
        !seen.is_empty(),
        "the move's progress was never on the page"
    );
    handle.shutdown().await;
}
