//! `atoll agent --node … --listen … --state-dir …`: runs until SIGINT or SIGTERM, then
//! stops gracefully.

use super::{ReadsFlag, RunArgs};
use crate::exit::Failure;
use crate::shutdown::ShutdownSignal;
use crate::{CmdResult, Context};
use atoll_agent::{Agent, AgentConfig, ReadAccess};
use atoll_core::{Config, SecretRef};
use std::process::ExitCode;
use std::time::Duration;

fn settings(ctx: &Context, a: RunArgs) -> Result<AgentConfig, Failure> {
    let missing = |f: &str| Failure::input(format!("--{f} is required to run an agent"));
    let node = a.node.ok_or_else(|| missing("node"))?;
    let listen = a.listen.ok_or_else(|| missing("listen"))?;
    let state_dir = a.state_dir.ok_or_else(|| missing("state-dir"))?;
    let config = Config::load(ctx.config.as_deref()).map_err(Failure::input)?;
    if a.test_hold_after_work && !crate::hook::is_sandbox(&config) {
        return Err(Failure::input(format!(
            "the test hook --test-hold-after-work works only on an `atoll sandbox` cluster; {} is not one",
            config.source
        )));
    }
    let mut cfg = AgentConfig::for_node(config, &node, listen, state_dir)
        .map_err(|e| Failure::input(format!("--{e}")))?;
    if let Some(t) = a.token {
        cfg.token = Some(
            t.parse::<SecretRef>()
                .map_err(|e| Failure::input(format!("--token: {e}")))?,
        );
    }
    cfg.reads = match a.reads {
        ReadsFlag::Open => ReadAccess::Open,
        ReadsFlag::Token if cfg.token.is_none() => {
            return Err(Failure::input(
                "--reads token needs --token (the token readers must present)",
            ))
        }
        ReadsFlag::Token => ReadAccess::Token,
    };
    if let Some(id) = a.node_id {
        cfg.node_id = id;
    }
    cfg.queue_limit = a.queue_limit;
    cfg.data_dir = a.data_dir;
    cfg.pg_bin = a.pg_bin;
    cfg.pg_log = a.pg_log;
    cfg.shutdown_grace = Duration::from_millis(a.shutdown_grace_ms);
    cfg.test_hold_after_work = a.test_hold_after_work;
    Ok(cfg)
}

pub fn run(ctx: &Context, a: RunArgs) -> CmdResult {
    let cfg = settings(ctx, a)?;
    crate::with_runtime(async move {
        // Before the address is printed: a SIGTERM sent on reading it must stop us gracefully.
        let shutdown = ShutdownSignal::install()?;
        let agent = Agent::start(cfg)
            .await
            .map_err(|e| Failure::failed(e).context("cannot start the agent"))?;
        for id in &agent.interrupted {
            eprintln!("action {id} was running when the agent stopped: FAILED interrupted");
        }
        // The bound address on stdout (port 0 picks one): scripts and tests read it.
        println!("listening on {}", agent.addr());
        let stopper = agent.stopper();
        tokio::spawn(async move {
            shutdown.recv().await;
            let _ = stopper.send(true);
        });
        agent
            .wait()
            .await
            .map_err(|e| Failure::failed(e).context("agent"))?;
        Ok(ExitCode::SUCCESS)
    })
}
