#!/bin/sh
# Writes OUTPUT_DIR/BuildFacts.swift for the BuildInfo module (run by the
# BuildFacts plugin before every build):
#   gitRevision   `git rev-parse --short HEAD` of PACKAGE_DIR, with "-dirty"
#                 when tracked files differ from it; "unknown" when PACKAGE_DIR
#                 is not the top of a git checkout (a tarball, say)
#   xenLibraries  `pkg-config --modversion xencontrol`: the libxen headers and
#                 libraries the build uses; "unknown" without them
# The file is rewritten only when its content changes.
#
#   scripts/build-facts.sh PACKAGE_DIR OUTPUT_DIR
set -u
package=${1:?usage: build-facts.sh PACKAGE_DIR OUTPUT_DIR}
output=${2:?usage: build-facts.sh PACKAGE_DIR OUTPUT_DIR}
PATH=$PATH:/usr/local/bin:/usr/bin:/bin

revision=unknown
top=$(git -C "$package" rev-parse --show-toplevel 2>/dev/null) || top=""
# Only the package's own checkout counts: a tarball unpacked inside some
# other repository must not report that repository's revision.
if [ -n "$top" ] && [ "$(cd "$top" && pwd -P)" = "$(cd "$package" && pwd -P)" ]; then
    if short=$(git -C "$package" rev-parse --short HEAD 2>/dev/null) && [ -n "$short" ]; then
        revision=$short
        changes=$(git -C "$package" status --porcelain --untracked-files=no 2>/dev/null) || changes=""
        [ -z "$changes" ] || revision="$revision-dirty"
    fi
fi

xen=$(pkg-config --modversion xencontrol 2>/dev/null) || xen=""
[ -n "$xen" ] || xen=unknown

mkdir -p "$output"
file=$output/BuildFacts.swift
new=$(cat <<SWIFT
// Written by scripts/build-facts.sh at build time; not in the repository.
enum BuildFacts {
    static let gitRevision = "$revision"
    static let xenLibraries = "$xen"
}
SWIFT
)
if [ ! -f "$file" ] || [ "$(cat "$file")" != "$new" ]; then
    printf '%s\n' "$new" > "$file.tmp" && mv "$file.tmp" "$file"
fi
