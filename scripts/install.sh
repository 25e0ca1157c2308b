#!/usr/bin/env bash
# Installs (or removes) the tools: chanctl and guest-agent, their manual pages,
# shell completions and systemd units, under $DESTDIR$PREFIX. make install builds in release
# first and installs the C interface too (scripts/install-lib.sh); make
# uninstall removes both.
#
#   scripts/install.sh install BUILD_DIR   e.g. .build/release, which must hold
#                                          chanctl, guest-agent and generate-manual
#   scripts/install.sh uninstall
#   environment: PREFIX (default /usr/local), DESTDIR (default empty)
#
# What goes where (PREFIX-relative):
#   bin/chanctl, bin/guest-agent
#   share/man/man1/chanctl.1, share/man/man1/guest-agent.1   (generate-manual,
#       swift-argument-parser's manual generator, from the binaries' own help;
#       the tool behind `swift package plugin generate-manual`, run here on
#       the two release binaries: the plugin first builds every product of
#       the package, benchmarks and fuzzers included, with its own flags)
#   share/bash-completion/completions/{chanctl,guest-agent}
#   share/zsh/site-functions/{_chanctl,_guest-agent}
#   share/fish/vendor_completions.d/{chanctl,guest-agent}.fish
#   lib/systemd/system/secure-channel-agent.service, secure-channel-sim.service,
#       secure-channel-dom0.service
#       (from systemd/*.service.in, with @BINDIR@ made PREFIX/bin and @DOCDIR@
#       PREFIX/share/doc/secure-channel)
#   share/doc/secure-channel/agent.conf.example   (systemd/agent.conf.example:
#       every key of /etc/secure-channel/agent.conf, commented out; copied
#       there by the administrator, never installed as the live file, so an
#       install cannot overwrite a configured agent's settings)
set -euo pipefail
cd "$(dirname "$0")/.."

usage="usage: scripts/install.sh install BUILD_DIR | uninstall"
action=${1:?$usage}
prefix=${PREFIX:-/usr/local}
root=${DESTDIR:-}$prefix
tools=(chanctl guest-agent)
units=(secure-channel-agent.service secure-channel-sim.service secure-channel-dom0.service)
docdir=share/doc/secure-channel

# Every file this script installs, PREFIX-relative (uninstall removes these).
files() {
    for tool in "${tools[@]}"; do
        echo "bin/$tool"
        echo "share/man/man1/$tool.1"
        echo "share/bash-completion/completions/$tool"
        echo "share/zsh/site-functions/_$tool"
        echo "share/fish/vendor_completions.d/$tool.fish"
    done
    for unit in "${units[@]}"; do echo "lib/systemd/system/$unit"; done
    echo "$docdir/agent.conf.example"
}

case $action in
install)
    build=${2:?$usage}
    for file in "${tools[@]}" generate-manual; do
        [[ -x $build/$file ]] || { echo "install: $build/$file is missing; build it first: swift build -c release --product $file (make install does)" >&2; exit 1; }
    done
    install -d "$root/bin" "$root/share/man/man1" "$root/share/bash-completion/completions" \
               "$root/share/zsh/site-functions" "$root/share/fish/vendor_completions.d" "$root/lib/systemd/system" \
               "$root/$docdir"
    # The manual pages carry the date of the commit built, not of the day
    # they were made, so the same sources give the same pages.
    date=$(git log -1 --format=%cs 2>/dev/null || true)
    scratch=$(mktemp -d)
    trap 'rm -rf "$scratch"' EXIT
    for tool in "${tools[@]}"; do
        install -m 0755 "$build/$tool" "$root/bin/$tool"
        "$build/generate-manual" "$build/$tool" ${date:+--date "$date"} --output-directory "$scratch"
        # A blank line of a command's discussion comes out as an empty input
        # line, which mdoc warns about: make it the paragraph break it means.
        sed 's/^$/.Pp/' "$scratch/$tool.1" > "$scratch/$tool.page"
        install -m 0644 "$scratch/$tool.page" "$root/share/man/man1/$tool.1"
        "$build/$tool" --generate-completion-script bash > "$scratch/$tool.bash"
        "$build/$tool" --generate-completion-script zsh > "$scratch/_$tool"
        "$build/$tool" --generate-completion-script fish > "$scratch/$tool.fish"
        install -m 0644 "$scratch/$tool.bash" "$root/share/bash-completion/completions/$tool"
        install -m 0644 "$scratch/_$tool" "$root/share/zsh/site-functions/_$tool"
        install -m 0644 "$scratch/$tool.fish" "$root/share/fish/vendor_completions.d/$tool.fish"
    done
    for unit in "${units[@]}"; do
        sed -e "s|@BINDIR@|$prefix/bin|g" -e "s|@DOCDIR@|$prefix/$docdir|g" "systemd/$unit.in" > "$scratch/$unit"
        install -m 0644 "$scratch/$unit" "$root/lib/systemd/system/$unit"
    done
    install -m 0644 systemd/agent.conf.example "$root/$docdir/agent.conf.example"
    echo "installed ${tools[*]} with manual pages, completions, ${units[*]} and $docdir/agent.conf.example under $root"
    ;;
uninstall)
    while read -r file; do rm -f "$root/$file"; done < <(files)
    rmdir "$root/$docdir" 2>/dev/null || true
    echo "removed ${tools[*]}, their manual pages, completions, ${units[*]} and $docdir/agent.conf.example from $root"
    ;;
files)
    files
    ;;
*)
    echo "$usage" >&2
    exit 2
    ;;
esac
