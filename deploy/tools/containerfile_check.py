#!/usr/bin/env python3
"""Checks deploy/Containerfile with the official Dockerfile parser (PyPI `dockerfile`, which binds
moby's buildkit parser): it parses; every base is `scratch` or names a release (a tag, not
`latest`); nothing is compiled or downloaded in the build (no RUN: the daemon is built outside,
by `cargo xtask image`); the final stage copies the daemon to the ENTRYPOINT's path and runs as
a non-root user."""
import sys

import dockerfile


def main(path):
    cmds = dockerfile.parse_file(path)
    errors, stages = [], []
    for c in cmds:
        if c.cmd == "FROM":
            stages.append({"image": c.value[0], "cmds": []})
        elif stages:
            stages[-1]["cmds"].append(c)
    if not stages:
        errors.append("no FROM")
    for s in stages:
        img = s["image"]
        if img != "scratch" and (":" not in img.rsplit("/", 1)[-1] or img.endswith(":latest")):
            errors.append(f"FROM {img}: base image without a release tag")
        for c in s["cmds"]:
            if c.cmd == "RUN":
                errors.append(f"RUN {' '.join(c.value)}: the image build compiles and fetches nothing")
    final = stages[-1]["cmds"] if stages else []
    users = [c.value[0] for c in final if c.cmd == "USER"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        errors.append("the runtime stage does not switch to a non-root USER")
    entry = [c for c in final if c.cmd == "ENTRYPOINT"]
    if not entry:
        errors.append("the runtime stage has no ENTRYPOINT")
    else:
        binary = entry[-1].value[0]
        if not binary.startswith("/"):
            errors.append(f"ENTRYPOINT {binary}: not an absolute path (no shell in the image)")
        copied = [c.value[-1] for c in final if c.cmd in ("COPY", "ADD")]
        if binary not in copied:
            errors.append(f"ENTRYPOINT {binary}: nothing is copied there")
    for e in errors:
        print(f"{path}: {e}", file=sys.stderr)
    if not errors:
        print(f"{path}: {len(stages)} stage(s) from " + ", ".join(s["image"] for s in stages))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
