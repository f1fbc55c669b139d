# shellcheck shell=bash
# Host-side helpers shared by tests/e2e/run and tests/e2e/build-image (sourced, not executed).

E2E_DIR=${E2E_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
REPO_ROOT=${REPO_ROOT:-$(cd "$E2E_DIR/../.." && pwd)}
E2E_CACHE_DIR=${E2E_CACHE_DIR:-/var/cache/mdev-hooks-e2e}

# Debian packages the host needs to build and boot the guest images. The kernel source is not among them:
# each release's linux-source-X.Y .deb comes from that release's archive (archive_apt, fetch_mtty_c).
HOST_PACKAGES=(debootstrap qemu-system-x86 e2fsprogs xz-utils util-linux)

# The Debian releases the real-kernel tier runs on (the default: all of them, as CI does).
ALL_RELEASES=(bullseye bookworm trixie)

# release_vars RELEASE: sets the per-release facts the build and the run need.
#   REL_PY      the guest's python3 (X.Y), REL_ABI its wheel ABI tag, REL_PYFULL its full version (markers)
#   REL_GLIBC   the guest's glibc minor (2.REL_GLIBC): the newest manylinux tag its pip accepts
#   REL_SRC     the kernel source package mtty.c comes from (the same upstream series as the guest's kernel)
#   REL_EXTRA   guest packages beyond the common list
#   REL_DEB_DEPS  the Debian package's dependencies, only downloaded into the image's apt cache (not installed,
#               apt lists kept): the guest installs mdev-hooks_*.deb with apt, offline, which must resolve and
#               install them itself (every release; pip into a venv is scenario l-pip-venv's, on bullseye).
release_vars() {
    case "$1" in
    bullseye) REL_PY=3.9 REL_PYFULL=3.9.2 REL_GLIBC=31 REL_SRC=linux-source-5.10 REL_EXTRA=()
        REL_DEB_DEPS=(python3-lxml python3-filelock python3-structlog) ;;
    bookworm) REL_PY=3.11 REL_PYFULL=3.11.2 REL_GLIBC=36 REL_SRC=linux-source-6.1 REL_EXTRA=()
        REL_DEB_DEPS=(python3-lxml python3-filelock python3-structlog) ;;
    # trixie: libvirt-daemon-system is a metapackage over the split drivers; name what the tier uses.
    # iproute2: the two-host tier (tests/e2e/two-host) gives eth0 its link-local address with `ip`.
    trixie) REL_PY=3.13 REL_PYFULL=3.13.5 REL_GLIBC=41 REL_SRC=linux-source-6.12
        REL_EXTRA=(libvirt-daemon libvirt-daemon-driver-qemu iproute2)
        REL_DEB_DEPS=(python3-lxml python3-filelock python3-structlog) ;;
    *) die "unknown release '$1' (have: ${ALL_RELEASES[*]})" ;;
    esac
    REL_ABI=cp${REL_PY/./}
}

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

# Print "MIRROR SECURITY_MIRROR": the Debian mirrors from the host's apt sources (any Debian suite: the
# same mirror serves bullseye, bookworm and trixie). E2E_MIRROR / E2E_SECURITY_MIRROR override.
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
suites = ("bullseye", "bookworm", "trixie")
main = next((u for u, s in entries if s in suites), None) \
    or next((u for u, s in entries if s.split("-")[0] in suites and "security" not in s), None) \
    or "http://deb.debian.org/debian"
sec = next((u for u, s in entries if s.split("-")[0] in suites and "security" in s), None) \
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

# archive_apt RELEASE apt-get|apt-cache ARGS...: the host's apt, pointed at RELEASE's archive (main,
# -updates, -security) with its own lists under $E2E_CACHE_DIR/apt/RELEASE: no effect on the host's apt.
# "archive_apt REL update" refreshes the lists (cheap when nothing changed: apt sends If-Modified-Since).
archive_apt() {
    local rel=$1 tool=$2 dir=$E2E_CACHE_DIR/apt/$1 mirror sec
    shift 2
    if [ ! -f "$dir/sources.list" ]; then
        read -r mirror sec < <(detect_mirrors)
        mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/sources.list.d"
        {
            echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $rel main"
            echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $rel-updates main"
            echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $sec $rel-security main"
        } > "$dir/sources.list.tmp"
        mv "$dir/sources.list.tmp" "$dir/sources.list"
    fi
    "$tool" -o Dir::Etc::SourceList="$dir/sources.list" -o Dir::Etc::SourceParts="$dir/sources.list.d" \
        -o Dir::State::Lists="$dir/lists" -o Dir::Cache="$dir/cache" -o Dir::State::status=/dev/null \
        -o Dir::Etc::Preferences=/dev/null -o Dir::Etc::PreferencesParts="$dir/sources.list.d" \
        -o APT::Architecture=amd64 -o Acquire::Languages=none -o DPkg::Lock::Timeout=600 -q "$@"
}

# archive_version RELEASE PACKAGE: the candidate version of PACKAGE in RELEASE (after archive_apt update)
archive_version() {
    archive_apt "$1" apt-cache policy "$2" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'
}

# fetch_mtty_c RELEASE DEST: samples/vfio-mdev/mtty.c of RELEASE's own kernel source (REL_SRC, the candidate
# version) into DEST. The .deb is downloaded with the host's apt pointed at RELEASE's archive, and only
# mtty.c is kept, cached per source version under $E2E_CACHE_DIR/apt/RELEASE.
fetch_mtty_c() {
    local rel=$1 dest=$2 ver cached tmp
    release_vars "$rel"
    ver=$(archive_version "$rel" "$REL_SRC")
    [ -n "$ver" ] && [ "$ver" != "(none)" ] || die "$rel's archive has no $REL_SRC"
    cached=$E2E_CACHE_DIR/apt/$rel/mtty-$REL_SRC-$ver.c
    if [ ! -s "$cached" ]; then
        tmp=$(mktemp -d "$E2E_CACHE_DIR/apt/$rel/src.XXXXXX")
        (cd "$tmp" && archive_apt "$rel" apt-get download "$REL_SRC=$ver" > download.log 2>&1) \
            || { cat "$tmp/download.log" >&2; rm -rf "$tmp"; die "apt-get download $REL_SRC=$ver ($rel) failed"; }
        dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -xO --wildcards './usr/src/linux-source-*.tar.xz' \
            | xz -dc | tar -xO --wildcards '*/samples/vfio-mdev/mtty.c' > "$tmp/mtty.c" || true
        [ -s "$tmp/mtty.c" ] || { rm -rf "$tmp"; die "no samples/vfio-mdev/mtty.c in $REL_SRC $ver"; }
        mv "$tmp/mtty.c" "$cached"
        rm -rf "$tmp"
    fi
    cp "$cached" "$dest"
    echo "$REL_SRC $ver"
}

# Print the cache key of RELEASE's guest image: a hash of the recipe (build-image, image/, wheelhouse.py
# and the helpers of this file the build uses), the
# release, the project's runtime dependency list and the versions of RELEASE's linux-source and kernel in
# its archive (call "archive_apt RELEASE apt-get update" first). Not of the project's code, and not of the
# guest-side test scripts (those travel in the 9p share at every run).
image_key() {
    local rel=$1 src kern
    release_vars "$rel"
    src=$(archive_version "$rel" "$REL_SRC")
    kern=$(archive_version "$rel" linux-image-amd64)
    [ -n "$src" ] && [ "$src" != "(none)" ] || die "cannot tell $REL_SRC's version in $rel's archive"
    {
        echo "recipe-v3 $rel"
        (cd "$E2E_DIR" && find build-image image lib/wheelhouse.py -type f -print0 | sort -z | xargs -0 sha256sum)
        declare -f release_vars archive_apt fetch_mtty_c detect_mirrors
        project_deps
        echo "$REL_SRC $src linux-image-amd64 $kern"
    } | sha256sum | cut -c1-16
}
