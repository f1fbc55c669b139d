"""Download the wheels a guest's Python needs for the given requirements, for ANOTHER Python than this one.

usage: wheelhouse.py PYVER PYFULL GLIBC_MINOR DEST REQUIREMENT...
    e.g. wheelhouse.py 3.9 3.9.2 31 /tmp/wh "lxml>=4.9" "tomli; python_version < '3.11'"

`pip download --python-version X` picks wheels for X but evaluates environment markers (top-level and
transitive, e.g. structlog's `typing-extensions; python_version < '3.11'`) against the Python that runs
pip (checked with pip 23.2: nothing marked `python_version < "3.11"` was downloaded for 3.9). So this
resolves one level at a time: markers evaluated here for the target, each distribution downloaded with
`--no-deps`, its Requires-Dist read from the wheel and followed. Writes DEST/requirements.txt (the
top-level requirements whose markers hold for the target) and prints one line per wheel.
The guest's own pip (`--no-index --find-links DEST`) re-checks the whole set with its own markers.
"""

import re
import subprocess
import sys
import zipfile
from pathlib import Path

try:
    from packaging.markers import Marker
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip always vendors it
    from pip._vendor.packaging.markers import Marker  # type: ignore[no-redef]
    from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore[no-redef]


def main() -> int:
    pyver, pyfull, glibc, dest = sys.argv[1:5]
    reqs = [Requirement(r) for r in sys.argv[5:]]
    env = {
        "python_version": pyver,
        "python_full_version": pyfull,
        "implementation_name": "cpython",
        "implementation_version": pyfull,
        "platform_python_implementation": "CPython",
        "os_name": "posix",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "extra": "",
    }
    out = Path(dest)
    out.mkdir(parents=True, exist_ok=True)
    abi = "cp" + pyver.replace(".", "")
    platforms = [f"manylinux_2_{m}_x86_64" for m in range(int(glibc), 16, -1)] + ["manylinux2014_x86_64"]
    platforms += ["manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    pip = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-cache-dir", "-q",
           "--no-deps", "--only-binary=:all:", "--dest", str(out), "--python-version", pyver,
           "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none"]
    for p in platforms:
        pip += ["--platform", p]

    def wanted(r: Requirement) -> bool:
        return r.marker is None or Marker(str(r.marker)).evaluate(env)

    top = [r for r in reqs if wanted(r)]
    (out / "requirements.txt").write_text("".join(f"{r}\n" for r in top))
    specs: dict[str, list[str]] = {}
    todo = list(top)
    done: dict[str, Path] = {}
    while todo:
        r = todo.pop(0)
        name = canonicalize_name(r.name)
        specs.setdefault(name, [])
        if str(r.specifier):
            specs[name].append(str(r.specifier))
        if name in done:
            # already chosen: the guest's pip will refuse the set if this one does not fit
            continue
        spec = r.name + ",".join(specs[name])
        before = set(out.glob("*.whl"))
        subprocess.run([*pip, spec], check=True)
        new = set(out.glob("*.whl")) - before
        whl = next(iter(new), None) or next(
            (w for w in out.glob("*.whl") if canonicalize_name(w.name.split("-")[0]) == name), None)
        if whl is None:
            print(f"wheelhouse: pip downloaded nothing for {spec}", file=sys.stderr)
            return 1
        done[name] = whl
        with zipfile.ZipFile(whl) as z:
            meta = next(n for n in z.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n))
            for line in z.read(meta).decode().splitlines():
                if line.startswith("Requires-Dist:"):
                    dep = Requirement(line.split(":", 1)[1].strip())
                    if wanted(dep):
                        todo.append(dep)
    for name, whl in sorted(done.items()):
        print(f"{name} {whl.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
