# shellcheck shell=bash
# Host-side helpers shared by tests/e2e/run and tests/e2e/build-image (sourced, not executed).

E2E_DIR=${E2E_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
REPO_ROOT=${REPO_ROOT:-$(cd "$E2E_DIR/../.." && pwd)}
E2E_CACHE_DIR=${E2E_CACHE_DIR:-/var/cache/mdev-hooks-e2e}

# Debian packages the host needs to build and boot the guest image.
HOST_PACKAGES=(debootstrap qemu-system-x86 linux-source-6.1 e2fsprogs xz-utils util-linux)

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# now_s: seconds since the epoch with milliseconds
now_s() { date +%s.%3N; }
# elapsed START: seconds since START, one decimal
elapsed() { awk -v a="$1" -v b="$(now_s)" 'BEGIN { printf "%.1f", b - a }'; }

apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq || die "apt-get update failed"
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

# Print the python3 that has a working pip (installing python3-pip on a bare Debian if needed).
host_python() {
    if python3 -m pip --version >/dev/null 2>&1; then
        echo python3
        return
    fi
    apt_install python3-pip python3-venv
    python3 -m pip --version >/dev/null 2>&1 || die "python3 -m pip does not work"
    echo python3
}

# Print "MIRROR SECURITY_MIRROR": the Debian mirrors from the host's apt sources.
# E2E_MIRROR / E2E_SECURITY_MIRROR override.
detect_mirrors() {
    python3 - <<'EOF'
import glob, os, re
files = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")) \
    + sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))
entries = []  # (uri, suite)
for f in files:
    try:
        text = open(f, encoding="utf-8", errors="replace").read()
    except OSError:
        continue
    if f.endswith(".sources"):
        for block in re.split(r"\n\s*\n", text):
            fields = {}
            for line in block.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.split()
            if "deb" not in fields.get("types", []) or fields.get("enabled", ["yes"])[0] == "no":
                continue
            for uri in fields.get("uris", []):
                for suite in fields.get("suites", []):
                    entries.append((uri, suite))
    else:
        for line in text.splitlines():
            line = re.sub(r"\[[^]]*\]", " ", line.split("#", 1)[0]).split()
            if len(line) >= 3 and line[0] == "deb":
                entries.append((line[1], line[2]))
main = next((u for u, s in entries if s == "bookworm"), None) \
    or next((u for u, s in entries if s.startswith("bookworm") and "security" not in s), None) \
    or "http://deb.debian.org/debian"
sec = next((u for u, s in entries if s == "bookworm-security"), None) \
    or next((u for u, s in entries if "security" in s), None) \
    or "http://deb.debian.org/debian-security"
print(os.environ.get("E2E_MIRROR") or main.rstrip("/"), os.environ.get("E2E_SECURITY_MIRROR") or sec.rstrip("/"))
EOF
}

# Print the project's runtime dependencies (one requirement a line) from pyproject.toml.
project_deps() {
    python3 - "$REPO_ROOT/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    deps = tomllib.load(f).get("project", {}).get("dependencies", [])
print("\n".join(sorted(deps)))
EOF
}

# Print the cache key of the guest image: a hash of the recipe (build-image, image/), the project's
# runtime dependency list and the host's linux-source version. Not of the project's code, and not of
# the guest-side test scripts (those travel in the 9p share at every run).
image_key() {
    {
        echo "recipe-v1"
        (cd "$E2E_DIR" && find build-image image -type f -print0 | sort -z | xargs -0 sha256sum)
        project_deps
        dpkg-query -W -f='${Version}\n' linux-source-6.1 2>/dev/null || echo "no-linux-source"
    } | sha256sum | cut -c1-16
}
