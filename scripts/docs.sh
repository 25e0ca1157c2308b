#!/usr/bin/env bash
# Builds the SecureChannel library's documentation (its doc comments and the
# catalog Sources/SecureChannel/SecureChannel.docc) as a static site, with
# swift-docc-plugin. Any DocC warning fails the build: a symbol link that
# does not resolve, a parameter documented under a name the function does
# not have. Browse the result through any web server, for example
#
#   python3 -m http.server --directory .build/docs 8000
#
# and http://localhost:8000/documentation/securechannel/ (DocC's pages load
# their content with JavaScript, so opening index.html as a file does not work).
#
#   scripts/docs.sh              into .build/docs
#   DOCS_OUTPUT=DIR scripts/docs.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${DOCS_OUTPUT:-.build/docs}
swift=${SWIFT:-swift}

# Replace an earlier build, never a directory that holds something else.
if [[ -d $out && -n $(ls -A "$out") && ! -d $out/data/documentation ]]; then
    echo "docs: $out is not empty and holds no earlier documentation build; choose another DOCS_OUTPUT" >&2
    exit 1
fi
rm -rf "$out"
mkdir -p "$out"
"$swift" package --allow-writing-to-directory "$out" \
    generate-documentation --target SecureChannel \
    --output-path "$out" --transform-for-static-hosting --warnings-as-errors
echo "documentation in $out: python3 -m http.server --directory $out 8000, then http://localhost:8000/documentation/securechannel/"
