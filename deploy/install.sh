#!/usr/bin/env bash
# Install attuned as a systemd service: a venv under /opt/attuned built from a system Python,
# the unit, its sysusers.d and tmpfiles.d entries, the docs and a default config.
# Idempotent: run it again to upgrade. An existing /etc/attuned/attuned.yaml is never replaced.
# docs/systemd.md walks through it.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
python=/usr/bin/python3
prefix=/opt/attuned
source_spec=$repo
dry_run=0

usage() {
    cat <<EOF
usage: $0 [--dry-run] [--python PATH] [--prefix DIR] [--source PIP-SPEC]

  --dry-run      print what would be done, change nothing (no root needed)
  --python PATH  system Python 3.11+ for the venv (default $python); not one under a home
                 directory: the attuned user must be able to read it
  --prefix DIR   where the venv goes (default $prefix)
  --source SPEC  what pip installs (default: this checkout, $repo); e.g. a wheel file
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
        --dry-run) dry_run=1 ;;
        --python) python=$2; shift ;;
        --prefix) prefix=$2; shift ;;
        --source) source_spec=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; exit 2 ;;
    esac
    shift
done

say() { printf '== %s\n' "$*"; }

# Every change goes through run: printed, and executed unless --dry-run.
run() {
    printf '+'
    printf ' %q' "$@"
    printf '\n'
    if [ "$dry_run" = 0 ]; then
        "$@"
    fi
}

have() { command -v "$1" >/dev/null 2>&1; }

if [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
    echo "error: run as root (or try --dry-run)" >&2
    exit 1
fi

if ! "$python" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: $python is not Python 3.11+ with the venv module (Debian: python3-venv)" >&2
    exit 1
fi

say "venv in $prefix"
if [ ! -x "$prefix/bin/python" ]; then
    run "$python" -m venv "$prefix"
fi
run "$prefix/bin/pip" install --quiet --upgrade pip
run "$prefix/bin/pip" install --quiet --upgrade "$source_spec"
# on PATH for operators and for the git post-receive hook (deploy/git-hooks/post-receive)
run ln -sfn "$prefix/bin/attuned" /usr/local/bin/attuned
run install -d -m 0755 "$prefix/share/doc/attuned"
run install -m 0644 "$repo"/docs/*.md "$prefix/share/doc/attuned/"

say "user attuned"
run install -D -m 0644 "$here/attuned.sysusers" /etc/sysusers.d/attuned.conf
if have systemd-sysusers; then
    run systemd-sysusers /etc/sysusers.d/attuned.conf
elif ! getent passwd attuned >/dev/null; then
    run useradd --system --user-group --home-dir /var/lib/attuned --shell /usr/sbin/nologin \
        --comment "attuned pack reconciler" attuned
fi

say "directories"
run install -D -m 0644 "$here/attuned.tmpfiles" /etc/tmpfiles.d/attuned.conf
if have systemd-tmpfiles; then
    run systemd-tmpfiles --create /etc/tmpfiles.d/attuned.conf
else
    run install -d -m 0755 /srv/attuned/packs.d /var/lib/node_exporter/textfile_collector
fi

say "config"
run install -d -m 0755 /etc/attuned
if [ -e /etc/attuned/attuned.yaml ]; then
    echo "kept /etc/attuned/attuned.yaml (compare with $here/attuned.yaml)"
else
    run install -m 0640 -o root -g attuned "$here/attuned.yaml" /etc/attuned/attuned.yaml
fi
run "$prefix/bin/attuned" config check --config /etc/attuned/attuned.yaml

say "unit"
unit=/etc/systemd/system/attuned.service
if [ "$prefix" = /opt/attuned ]; then
    run install -m 0644 "$here/attuned.service" "$unit"
else
    run sh -c 'sed "s|/opt/attuned/|$1/|g" "$2" > "$3" && chmod 0644 "$3"' \
        sh "$prefix" "$here/attuned.service" "$unit"
fi
if [ -d /run/systemd/system ]; then
    run systemctl daemon-reload
    run systemctl try-restart attuned.service  # an upgrade: restart only if it was running
fi

say "done"
cat <<EOF
Start it now and at boot:   systemctl enable --now attuned
Watch it:                   systemctl status attuned; journalctl -u attuned -f -o cat | jq .
Drop packs into:            /srv/attuned/packs.d
EOF
