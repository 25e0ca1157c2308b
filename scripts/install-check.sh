#!/usr/bin/env bash
# The installation as a packager gets it (run by make test, and by make
# install-check alone): make install DESTDIR=<scratch> PREFIX=/usr, then
#   - exactly the expected files are there, and no other;
#   - the installed binaries run (--version);
#   - man -l renders each manual page with no warning;
#   - each completion script loads in its shell (bash; zsh and fish when installed);
#   - systemd-analyze verify accepts the units, each naming the installed
#     binary and manual page;
#   - the example configuration file, every key uncommented, is accepted by
#     the installed guest-agent (config check) and sets every key;
# then make uninstall, after which no file is left.
# Fails with the first problem found, naming it.
set -euo pipefail
cd "$(dirname "$0")/.."

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
destdir=$scratch/root
prefix=/usr
root=$destdir$prefix
fail() { echo "install-check: $*" >&2; exit 1; }

make --no-print-directory install DESTDIR="$destdir" PREFIX="$prefix"

# What must be there: the tools' files and the C interface's.
expected=$( {
    PREFIX=$prefix ./scripts/install.sh files
    printf '%s\n' include/securechannel.h lib/libsecurechannel.so lib/libsecurechannel.so.1 \
                  lib/libsecurechannel.a lib/pkgconfig/securechannel.pc
} | sed "s|^|$prefix/|" | sort)
found=$(cd "$destdir" && find . \( -type f -o -type l \) | sed 's|^\.||' | sort)
missing=$(comm -23 <(echo "$expected") <(echo "$found"))
extra=$(comm -13 <(echo "$expected") <(echo "$found"))
[[ -z $missing ]] || fail "make install did not install: $missing"
[[ -z $extra ]] || fail "make install installed files nobody expects (add them to scripts/install.sh files): $extra"

for tool in chanctl guest-agent; do
    "$root/bin/$tool" --version | head -n1 | grep -q "^$tool [0-9]" || fail "$root/bin/$tool --version does not print its version"
    page=$root/share/man/man1/$tool.1
    warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || fail "man -l $page failed: $warnings"
    [[ -z $warnings ]] || fail "man -l $page warns: $warnings"
    MANWIDTH=80 man -l "$page" 2>/dev/null | grep -q "^NAME" || fail "man -l $page renders no NAME section"
    bash -c "source '$root/share/bash-completion/completions/$tool'; complete -p $tool" >/dev/null \
        || fail "the bash completion of $tool does not load or register itself"
    if command -v zsh >/dev/null; then
        zsh -n "$root/share/zsh/site-functions/_$tool" || fail "the zsh completion of $tool does not parse"
    fi
    if command -v fish >/dev/null; then
        fish --no-execute "$root/share/fish/vendor_completions.d/$tool.fish" || fail "the fish completion of $tool does not parse"
    fi
done

# The units name $prefix/bin/...; what systemd-analyze verify checks of them
# (that the binaries are executable, that man finds the Documentation= pages)
# must find the DESTDIR's files, so it verifies copies pointing there.
mkdir -p "$scratch/units"
for unit in "$root"/lib/systemd/system/*.service; do
    name=$(basename "$unit")
    grep -q "^ExecStart=$prefix/bin/" "$unit" || fail "$name does not start a binary of $prefix/bin"
    sed "s|$prefix/bin/|$root/bin/|g" "$unit" > "$scratch/units/$name"
done
problems=$(MANPATH=$root/share/man systemd-analyze verify "$scratch"/units/*.service 2>&1) \
    || fail "systemd-analyze verify rejects the units: $problems"
[[ -z $problems ]] || fail "systemd-analyze verify warns about the units: $problems"

# The example agent.conf: uncommented (its keys are the '#key = value'
# lines), the installed agent must accept every line, and every key must be
# there. backend comes from the command line: the example's xen would
# refuse its simulator-only enforcement line, and it shows the command line
# winning.
example=$root/share/doc/secure-channel/agent.conf.example
sed -E 's/^#([a-z-]+ = )/\1/' "$example" > "$scratch/agent.conf"
chmod 600 "$scratch/agent.conf"
check=$("$root/bin/guest-agent" config check --config "$scratch/agent.conf" --backend sim 2>&1) \
    || fail "guest-agent config check rejects the example agent.conf with its keys uncommented: $check"
unset_keys=$(grep -E '^  [a-z-]+ += .*# (default|-)$' <<<"$check" || true)
[[ -z $unset_keys ]] || fail "the example agent.conf does not set these keys (add them, commented out): $unset_keys"
grep -qE "^  backend += sim +# command line$" <<<"$check" || fail "config check does not let --backend win over the file: $check"

make --no-print-directory uninstall DESTDIR="$destdir" PREFIX="$prefix"
left=$(cd "$destdir" && find . \( -type f -o -type l \) | sed 's|^\.||' | sort)
[[ -z $left ]] || fail "make uninstall left: $left"
# And an uninstall that removes nothing is noticed: the files were there.
[[ -n $expected ]] || fail "no files expected: scripts/install.sh files printed nothing"
echo "install-check: make install put $(echo "$expected" | wc -l) files under DESTDIR, all checked; make uninstall removed them"
