#!/bin/sh
# Install kerntrace and what it needs on a Debian/Ubuntu host (as root):
# the distribution's bcc, the kernel headers for the running kernel when the
# distribution packages them, a virtualenv in /opt/kerntrace, and the
# commands (kerntrace, iolatency, biolatency, ...) in /usr/local/bin.
# Idempotent: run it again to update.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
prefix=${KERNTRACE_PREFIX:-/opt/kerntrace}

if [ "$(id -u)" != 0 ]; then
    echo "install.sh: run as root (it installs packages)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install.sh: this script knows apt (Debian/Ubuntu); elsewhere install python3, pluggy and your distribution's bcc (python3-bcc), then 'pip install $here'" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq python3 python3-venv python3-bpfcc bpfcc-tools >/dev/null
# Headers let bcc compile; without them kerntrace falls back to ftrace.
if apt-get install -y -qq "linux-headers-$(uname -r)" >/dev/null 2>&1; then
    echo "install.sh: kernel headers for $(uname -r) installed"
else
    echo "install.sh: no headers package for kernel $(uname -r); tools will use the ftrace backend where eBPF needs them"
fi

/usr/bin/python3 -m venv "$prefix"
"$prefix/bin/pip" install -q --upgrade "$here"
# Every console script setup.cfg declares (kerntrace and one per tool).
cmds=$(/usr/bin/python3 - "$here/setup.cfg" <<'EOF'
import configparser, sys
cfg = configparser.ConfigParser()
cfg.read(sys.argv[1])
lines = cfg.get("options.entry_points", "console_scripts").splitlines()
print(" ".join(line.split("=")[0].strip() for line in lines if line.strip()))
EOF
)
for cmd in $cmds; do
    ln -sf "$prefix/bin/$cmd" "/usr/local/bin/$cmd"
done
for page in "$here"/man/man8/*.8; do
    [ -e "$page" ] || continue
    mkdir -p /usr/local/share/man/man8
    cp "$page" /usr/local/share/man/man8/
done
echo "install.sh: kerntrace installed in $prefix; commands in /usr/local/bin"
