//! Creating a sandbox: every node of every island, undone completely if any step fails,
//! so a failed `up` leaves nothing half-made behind.

use super::*;

impl Sandbox {
    pub(crate) fn create(spec: &SandboxSpec) -> Result<Sandbox, SandboxError> {
        let runner = Runner::new(find_pg_bin()?)?;
        // Ports are checked before anything is created.
        let base = match spec.base_port {
            Some(base) => {
                ports::check_base(base, spec.islands, spec.replicas)?;
                base
            }
            None => ports::pick_default_base(spec.islands, spec.replicas)?,
        };
        let created_dir = !spec.dir.exists();
        if !created_dir {
            let mut entries = std::fs::read_dir(&spec.dir)
                .map_err(|e| SandboxError::io("cannot read directory", &spec.dir, e))?;
            if entries.next().is_some() {
                return Err(SandboxError::DirNotEmpty {
                    dir: spec.dir.clone(),
                });
            }
        }
        std::fs::create_dir_all(&spec.dir)
            .map_err(|e| SandboxError::io("cannot create directory", &spec.dir, e))?;
        let result = std::fs::canonicalize(&spec.dir)
            .map_err(|e| SandboxError::io("cannot resolve", &spec.dir, e))
            .and_then(|dir| {
                let mut state = State {
                    format: STATE_FORMAT,
                    islands: spec.islands,
                    replicas: spec.replicas,
                    base_port: base,
                    pg_bin: runner.bin.clone(),
                    nodes: Vec::new(),
                    tls: spec.tls,
                    ha: None,
                };
                match Self::populate(&runner, &dir, &mut state, created_dir) {
                    Ok(()) => Ok(Sandbox {
                        dir,
                        state: Mutex::new(state),
                    }),
                    Err(e) => {
                        // Nothing half-made left behind.
                        undo_nodes(&state.nodes);
                        for island in 0..spec.islands {
                            remove_quietly(&island_dir(&dir, island));
                        }
                        remove_quietly(&dir.join(tls::TLS_DIR));
                        remove_quietly(&dir.join(STATE_FILE));
                        remove_quietly(&dir.join(CONFIG_FILE));
                        Err(e)
                    }
                }
            });
        if result.is_err() && created_dir {
            remove_quietly(&spec.dir);
        }
        let sandbox = result?;
        info!(dir = %sandbox.dir.display(), base_port = base, "sandbox created");
        Ok(sandbox)
    }

    pub(crate) fn populate(
        runner: &Runner,
        dir: &Path,
        state: &mut State,
        created_dir: bool,
    ) -> Result<(), SandboxError> {
        if created_dir {
            // Our own directory: make sure the server user may enter it whatever the umask.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| SandboxError::io("cannot set permissions of", dir, e))?;
        }
        runner.check_reachable(dir)?;
        if state.tls {
            tls::create_files(runner, dir)?;
        }
        for island in 0..state.islands {
            create_island(runner, dir, state, island, state.replicas)?;
        }
        state.save(dir)?;
        state.write_config(dir)
    }

    pub(crate) fn check_spec(&self, spec: &SandboxSpec) -> Result<(), SandboxError> {
        let state = self.lock();
        let current = state.island_ids().len();
        let mismatch = |what: String| SandboxError::SpecMismatch {
            dir: self.dir.clone(),
            what,
        };
        if spec.islands != state.islands && usize::from(spec.islands) != current {
            return Err(mismatch(format!(
                "it has {current} island(s), spec asks for {}",
                spec.islands
            )));
        }
        // A TLS sandbox restarts without `--tls`; a plain one cannot gain it.
        if spec.tls && !state.tls {
            return Err(mismatch("it was created without --tls".into()));
        }
        if spec.replicas != state.replicas {
            return Err(mismatch(format!(
                "it was created with {} replica(s) per island, spec asks for {}",
                state.replicas, spec.replicas
            )));
        }
        match spec.base_port {
            Some(base) if base != state.base_port => Err(mismatch(format!(
                "its base port is {}, spec asks for {base}",
                state.base_port
            ))),
            _ => Ok(()),
        }
    }
}

pub(crate) fn island_dir(dir: &Path, island: u16) -> PathBuf {
    dir.join(format!("island{island}"))
}

/// Creates, configures and starts one island; nodes are pushed to `state` as they are
/// created so that a failure can be undone.
pub(crate) fn create_island(
    runner: &Runner,
    dir: &Path,
    state: &mut State,
    island: u16,
    replicas: u16,
) -> Result<(), SandboxError> {
    let idir = island_dir(dir, island);
    runner.make_server_dir(&idir)?;
    let ports = spec::island_ports(state.base_port, island, replicas)?;
    let mut master_port = None;
    for (index, port) in ports {
        let role = if index == 0 {
            Role::Master
        } else {
            Role::Replica
        };
        state.nodes.push(NodeState {
            island,
            index,
            role,
            port,
            data_dir: idir.join(format!("node{index}")),
            log_file: idir.join(format!("node{index}.log")),
            pid: None,
        });
        let last = state.nodes.len() - 1;
        let n = &state.nodes[last];
        match master_port {
            None => {
                runner.init_master(n)?;
                if state.tls {
                    tls::configure_master(&n.data_dir, &dir.join(tls::TLS_DIR))?;
                }
            }
            Some(mp) => runner.init_replica(n, mp)?,
        }
        let pid = runner.start(n)?;
        state.nodes[last].pid = Some(pid);
        master_port.get_or_insert(port);
    }
    Ok(())
}

/// Stops the given nodes (replicas first); used to undo a failed creation.
pub(crate) fn undo_nodes(nodes: &[NodeState]) {
    let mut ordered: Vec<&NodeState> = nodes.iter().collect();
    ordered.sort_by_key(|n| std::cmp::Reverse(n.role));
    for n in ordered {
        if let Some(pid) = node::running_pid(n) {
            if let Err(e) = node::stop(n, pid) {
                warn!(error = %e, "cleanup: could not stop node");
            }
        }
    }
}

pub(crate) fn remove_quietly(path: &Path) {
    let result = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    if let Err(e) = result {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(path = %path.display(), error = %e, "cleanup: could not remove");
        }
    }
}
