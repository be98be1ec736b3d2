//! Range-lock profiles whose functions come with a module loaded while
//! recording (the test module `insmod`ed after `rltop record` started).
//!
//! `/proc/modules` is read every [`POLL`]. When modules appeared and no
//! profile is attached, the profile is detected again from /proc/kallsyms
//! and BTF, and attached when its functions are in one of the new modules:
//! its layout goes into the `RL_LAYOUT` map first, then its kprobes. When
//! that module goes, its probes are detached and removed. Each change is a
//! `marker` event in the trace (`rltop: module ... loaded: ...`) and a line
//! for the user.
//!
//! Polling, not the `module:module_load` tracepoint: attaching needs user
//! space anyway (kallsyms, BTF, tracefs), and a module's own init runs
//! before any probe could be placed on its functions. What a module does
//! in the first [`POLL`] after its load is not traced; the marker's time
//! says from when it is.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rltop_core::events::{Body, Event};

use super::profile::{self, Detection, Kallsyms};
use super::{ProbeReport, Session, Status, btf, monotonic_ns, write_rl_layout};

/// How often `/proc/modules` is read (a few hundred bytes).
pub const POLL: Duration = Duration::from_millis(200);

/// What the watch knows.
pub(super) struct ModWatch {
    modules: BTreeSet<String>,
    last: Instant,
    /// The module of the profile attached at start-up, if its functions
    /// are a module's: its unload is marked.
    start_module: Option<String>,
    /// A profile the watch attached.
    late: Option<Late>,
}

struct Late {
    module: String,
    profile: String,
    /// The session's kprobe and report counts before it: its probes come last.
    kprobes_before: usize,
    reports_before: usize,
}

/// The names of the loaded modules (`/proc/modules`: `name size refs ...`).
fn loaded_modules() -> BTreeSet<String> {
    std::fs::read_to_string("/proc/modules")
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().next())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

impl ModWatch {
    pub(super) fn new(start_module: Option<String>) -> ModWatch {
        ModWatch {
            modules: loaded_modules(),
            last: Instant::now(),
            start_module,
            late: None,
        }
    }
}

impl Session {
    /// See the module docs: attaches or detaches a profile as its module
    /// comes and goes. Returns a line for the user per change.
    pub fn watch_modules(&mut self) -> Vec<String> {
        let Some(mut w) = self.modwatch.take() else {
            return Vec::new();
        };
        let mut lines = Vec::new();
        if w.last.elapsed() >= POLL {
            w.last = Instant::now();
            let now = loaded_modules();
            let added: Vec<String> = now.difference(&w.modules).cloned().collect();
            let removed: Vec<String> = w.modules.difference(&now).cloned().collect();
            w.modules = now;
            if let Some(m) = w.start_module.as_ref().filter(|m| removed.contains(m)) {
                lines.push(format!(
                    "module {m} unloaded: the range-lock probes on its functions are gone"
                ));
                w.start_module = None;
            }
            if let Some(late) = w.late.take_if(|l| removed.contains(&l.module)) {
                self.kprobes.truncate(late.kprobes_before);
                self.probes.truncate(late.reports_before);
                lines.push(format!(
                    "module {} unloaded: range-lock profile {} detached",
                    late.module, late.profile
                ));
            }
            if !added.is_empty() && w.late.is_none() && w.start_module.is_none() {
                match self.attach_late(&added) {
                    Ok(Some((line, late))) => {
                        lines.push(line);
                        w.late = Some(late);
                    }
                    Ok(None) => {}
                    Err(e) => lines.push(format!(
                        "module {} loaded, but its range locks are NOT traced: {e:#}",
                        added.join(", ")
                    )),
                }
            }
        }
        self.modwatch = Some(w);
        for l in &lines {
            self.marker(format!("rltop: {l}"));
        }
        lines
    }

    /// Detects a profile in the new modules and attaches it.
    fn attach_late(&mut self, added: &[String]) -> anyhow::Result<Option<(String, Late)>> {
        let syms = Kallsyms::read().context("reading /proc/kallsyms")?;
        let btf = btf::Btf::from_kernel().ok();
        let in_added = |sym: &str| {
            syms.module_of(sym)
                .is_some_and(|m| added.iter().any(|a| a == m))
        };
        let p = match super::detect_with_modules(&syms, btf.as_ref()) {
            Detection::None => return Ok(None),
            Detection::Ambiguous(names) => {
                let p = profile::Profile::builtin(&names[0]);
                if !p.is_some_and(|p| p.symbols().any(in_added)) {
                    return Ok(None);
                }
                anyhow::bail!(
                    "functions of {} found (same symbols, no BTF to tell them apart): \
                     record with --profile {} after loading it",
                    names.join(" or "),
                    names.join(" or --profile ")
                );
            }
            Detection::Found(p) => p,
        };
        let plan =
            super::plan_with_module_btf(&p, &syms, btf.as_ref()).map_err(anyhow::Error::msg)?;
        let Some(module) = plan.module(&syms).filter(|m| added.iter().any(|a| a == m)) else {
            return Ok(None);
        };
        let module = module.to_owned();
        let ebpf = self.ebpf.as_mut().context("the session has ended")?;
        write_rl_layout(ebpf, &plan.layout)?;
        let late = Late {
            module: module.clone(),
            profile: plan.name.clone(),
            kprobes_before: self.kprobes.len(),
            reports_before: self.probes.len(),
        };
        let mut attached = 0;
        for k in &plan.probes {
            let status = super::attach_plan_probe(
                ebpf,
                &mut self.kprobes,
                k,
                &self.probes[late.reports_before..],
            );
            if matches!(status, Status::Attached { .. }) {
                attached += 1;
            }
            self.probes.push(ProbeReport {
                name: super::kprobe_name(k, self.kprobes.available()),
                program: k.program,
                status,
                covers: None,
            });
        }
        let line = format!(
            "module {module} loaded: range locks: detected profile {}, offsets from {}; {}; {attached} of {} probes attached",
            plan.name,
            plan.offsets_from,
            super::queue_order(&plan, &self.probes[late.reports_before..]),
            plan.probes.len()
        );
        self.profile = plan.name.clone();
        self.flavour = Some(plan.flavour.clone());
        self.fit = Some(super::fit::Fit::new(&plan.name));
        self.detection = line.clone();
        Ok(Some((line, late)))
    }

    /// Queues a `marker` event, now.
    fn marker(&mut self, text: String) {
        self.reorder.push(Event {
            ts: monotonic_ns(),
            tid: 0,
            pid: 0,
            cpu: None,
            body: Body::Marker { text },
        });
    }
}
