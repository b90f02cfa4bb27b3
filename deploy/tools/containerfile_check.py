#!/usr/bin/env python3
"""Checks deploy/Containerfile with the official Dockerfile parser (PyPI `dockerfile`, which binds
moby's buildkit parser): it parses; every base image names a release (tag, not `latest`) through
the global ARGs; the eBPF object is built by `cargo xtask build-ebpf` and the binary with --locked; the
runtime stage is separate, copies only the build output and runs as a non-root user."""
import re
import sys

import dockerfile


def main(path):
    cmds = dockerfile.parse_file(path)
    args, stages, errors = {}, [], []
    for c in cmds:
        if c.cmd == "ARG" and not stages and "=" in c.value[0]:
            k, v = c.value[0].split("=", 1)
            args[k] = v
        elif c.cmd == "FROM":
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), c.value[0])
            name = c.value[2] if len(c.value) > 2 else None
            stages.append({"image": image, "name": name, "cmds": []})
        elif stages:
            stages[-1]["cmds"].append(c)
    names = {s["name"] for s in stages}
    if len(stages) < 2:
        errors.append("not a multi-stage build")
    for s in stages:
        img = s["image"]
        if "$" in img:
            errors.append(f"FROM {img}: unresolved ARG")
        elif img not in names and (":" not in img.rsplit("/", 1)[-1] or img.endswith(":latest")):
            errors.append(f"FROM {img}: base image without a release tag")
    runs = " ".join(" ".join(c.value) for s in stages for c in s["cmds"] if c.cmd == "RUN")
    for needed in ("cargo xtask build-ebpf", "--locked", "rust-src", "bpf-linker"):
        if needed not in runs:
            errors.append(f"no RUN uses {needed!r}")
    final = stages[-1]["cmds"] if stages else []
    users = [c.value[0] for c in final if c.cmd == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        errors.append("runtime stage does not switch to a non-root USER")
    for c in final:
        if c.cmd == "COPY" and not any(f.startswith("--from=") for f in c.flags):
            errors.append(f"runtime stage copies from the build context: COPY {' '.join(c.value)}")
    if not any(c.cmd == "ENTRYPOINT" for c in final):
        errors.append("runtime stage has no ENTRYPOINT")
    for e in errors:
        print(f"{path}: {e}", file=sys.stderr)
    if not errors:
        print(f"{path}: {len(stages)} stages, " + ", ".join(s["image"] for s in stages))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
