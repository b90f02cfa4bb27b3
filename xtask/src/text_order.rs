//! `cargo xtask text-order CALLGRIND_OUT BINARY`: the daemon's link order script
//! (`ingress-userspace/link/text-order.ld`) from a callgrind run of its start, printed on
//! stdout. Every function of BINARY that the run executed, in BINARY's address order (code
//! that was near stays near), becomes an input section pattern of `.text.ready`; the
//! script's header says why and how.

use std::{collections::HashSet, path::PathBuf, process::Command};

use anyhow::{Context, bail};
use clap::Args;

#[derive(Args)]
pub struct TextOrderArgs {
    /// Output of `valgrind --tool=callgrind --demangle=no` run on the daemon.
    callgrind_out: PathBuf,
    /// The binary that run used (its symbol table gives the functions' addresses).
    binary: PathBuf,
}

const HEADER: &str = "\
/* Code the daemon runs from start to ready, placed together at the front of its text.
 *
 * Why: the kernel maps a binary's pages around each one a process touches (fault-around,
 * 64 KiB), and those pages count in its RSS. Left in the linker's order, the ~2.8 MiB of
 * functions a start at 10k Ingresses runs were spread over 163 such windows of a 22 MiB
 * `.text`, ~10 MiB resident (deploy/docs/performance.md, \"Session 21\"). Issue 13's target
 * is RSS <= 96 MiB when ready.
 *
 * How: GNU ld's default script, augmented (`INSERT BEFORE .text`): every input section named
 * here goes, in this order, into `.text.ready` just before `.text`: `.text.<symbol>`, one
 * section per function (rustc and the cc crate build with function sections), and
 * `.text.unlikely.<symbol>` where LLVM placed a function it deems cold (`#[cold]` among
 * them). A name that no longer exists matches nothing and costs nothing; a function not
 * named stays in `.text`.
 * Linked into the daemon's binary only (`build.rs`), on linux-gnu.
 *
 * Made by `cargo xtask text-order` (xtask/src/text_order.rs) from a callgrind run of the
 * release daemon's start on the control-plane bench's manifest directory (10k Ingresses),
 * stopped once ready: every function of the binary that callgrind saw run. To make it again
 * (as root, in a network namespace of your own: the daemon listens):
 *   BENCH_SCALES=10000 BENCH_DAEMON_ONLY=1 BENCH_MANIFESTS_OUT=DIR cargo xtask bench control-plane
 *   valgrind --tool=callgrind --demangle=no --callgrind-out-file=cg.out \\
 *     target/release/xdp-ingress run --no-xdp --listen-address 127.0.0.1 \\
 *     --metrics-addr 127.0.0.1:9901 --manifests DIR
 *   (SIGTERM to valgrind's pid once `curl 127.0.0.1:9901/readyz` answers 200)
 *   cargo xtask text-order cg.out target/release/xdp-ingress > ingress-userspace/link/text-order.ld
 *   cargo build --release -p ingress-userspace --bins   (the binary linked in the new order)
 * The binary given to text-order must be the one profiled: names are matched to its symbols.
 */
";

pub fn run(args: TextOrderArgs) -> anyhow::Result<()> {
    let profile = std::fs::read(&args.callgrind_out)
        .with_context(|| format!("reading {}", args.callgrind_out.display()))?;
    let executed = executed_functions(&String::from_utf8_lossy(&profile));
    let out = Command::new("nm")
        .args(["--defined-only", "-S"])
        .arg(&args.binary)
        .output()
        .context("running nm (binutils)")?;
    if !out.status.success() {
        bail!(
            "nm {}: {}",
            args.binary.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let symbols = text_symbols(&String::from_utf8_lossy(&out.stdout));
    let ordered = in_address_order(&symbols, &executed);
    if ordered.is_empty() {
        bail!(
            "no function of {} in {}",
            args.binary.display(),
            args.callgrind_out.display()
        );
    }
    eprintln!(
        "{} functions, {:.1} MiB",
        ordered.len(),
        ordered.iter().map(|s| s.size).sum::<u64>() as f64 / f64::from(1 << 20)
    );
    print!("{}", script(&ordered));
    Ok(())
}

/// Names of the functions a callgrind profile has costs or calls for: the `fn=(id) name` and
/// `cfn=(id) name` lines (callgrind's name compression names each once; later lines carry
/// only the id). Recursion levels (`'2`) are the same function.
fn executed_functions(profile: &str) -> HashSet<String> {
    profile
        .lines()
        .filter_map(|l| l.strip_prefix("fn=").or_else(|| l.strip_prefix("cfn=")))
        .filter_map(|rest| rest.split_once(") ").map(|(_, name)| name.trim()))
        .map(|name| name.split_once('\'').map_or(name, |(n, _)| n).to_owned())
        .collect()
}

#[derive(Debug, PartialEq)]
struct Symbol {
    addr: u64,
    size: u64,
    name: String,
}

/// Text symbols of `nm -S` output (`addr size type name`); names no linker script can
/// quote are left out.
fn text_symbols(nm: &str) -> Vec<Symbol> {
    nm.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (addr, size, kind, name) = (f.next()?, f.next()?, f.next()?, f.next()?);
            if !matches!(kind, "t" | "T" | "w" | "W") || name.contains('"') {
                return None;
            }
            Some(Symbol {
                addr: u64::from_str_radix(addr, 16).ok()?,
                size: u64::from_str_radix(size, 16).ok()?,
                name: name.to_owned(),
            })
        })
        .collect()
}

fn in_address_order<'a>(symbols: &'a [Symbol], executed: &HashSet<String>) -> Vec<&'a Symbol> {
    let mut seen = HashSet::new();
    let mut v: Vec<&Symbol> = symbols
        .iter()
        .filter(|s| executed.contains(&s.name) && seen.insert(&s.name))
        .collect();
    v.sort_by_key(|s| s.addr);
    v
}

fn script(ordered: &[&Symbol]) -> String {
    let mut s = String::from(HEADER);
    s.push_str("SECTIONS\n{\n  .text.ready :\n  {\n");
    for sym in ordered {
        let n = &sym.name;
        s.push_str(&format!("    *(\".text.{n}\" \".text.unlikely.{n}\")\n"));
    }
    s.push_str("  }\n}\nINSERT BEFORE .text;\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executed_functions_are_read_from_named_lines_only() {
        let profile = "ob=(1) /bin/x\nfn=(1) _ZN1a1f17h0E\n0 3\ncfn=(2) mi_malloc\ncalls=1 0\n\
                       0 5\nfn=(1)\n0 1\nfn=(3) _RNvCs1_1b1g'2\n0 1\n";
        let got = executed_functions(profile);
        let want: HashSet<String> = ["_ZN1a1f17h0E", "mi_malloc", "_RNvCs1_1b1g"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_script_names_executed_text_symbols_in_address_order() {
        let nm = "0000000000002000 0000000000000010 T mi_malloc\n\
                  0000000000001000 0000000000000020 t _ZN1a1f17h0E\n\
                  0000000000003000 0000000000000008 T not_run\n\
                  0000000000004000 0000000000000008 D mi_malloc_data\n\
                                   U undefined\n";
        let symbols = text_symbols(nm);
        assert_eq!(symbols.len(), 3);
        let executed: HashSet<String> =
            ["mi_malloc", "_ZN1a1f17h0E", "mi_malloc_data", "gone_since"]
                .into_iter()
                .map(String::from)
                .collect();
        let ordered = in_address_order(&symbols, &executed);
        let s = script(&ordered);
        let body: Vec<&str> = s.lines().filter(|l| l.contains("*(\"")).collect();
        assert_eq!(
            body,
            [
                "    *(\".text._ZN1a1f17h0E\" \".text.unlikely._ZN1a1f17h0E\")",
                "    *(\".text.mi_malloc\" \".text.unlikely.mi_malloc\")",
            ]
        );
        assert!(s.ends_with("INSERT BEFORE .text;\n"));
    }
}
