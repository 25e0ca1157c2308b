#!/usr/bin/env bash
# Installs the C interface from a build directory (make install-lib builds
# it in release first): the header, libsecurechannel.so.1 with its
# libsecurechannel.so link, the static archive libsecurechannel.a and
# securechannel.pc, under $DESTDIR$PREFIX (docs/C-API.md, "Installing").
#
#   scripts/install-lib.sh BUILD_DIR      e.g. .build/release
#   scripts/install-lib.sh --uninstall    removes what it installed (make uninstall)
#   environment: PREFIX (default /usr/local), LIBDIR (PREFIX/lib),
#                INCLUDEDIR (PREFIX/include), DESTDIR (default empty)
#
# libsecurechannel.so.MAJOR is linked here, from the objects SwiftPM linked
# into its own libsecurechannel.so (the build directory's
# securechannel.product/Objects.LinkFileList), with the version script
# Sources/SecureChannelABI/exports.map (only the sc_ functions are exported)
# and the soname: linker flags Package.swift cannot carry without making the
# package unusable as a versioned dependency.
#
# The Swift runtime is not copied: libsecurechannel.so finds it in the
# toolchain's runtime directory through its RUNPATH, and securechannel.pc
# names that directory for static linking.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${1:?usage: scripts/install-lib.sh BUILD_DIR (e.g. .build/release) | --uninstall}
prefix=${PREFIX:-/usr/local}
libdir=${LIBDIR:-$prefix/lib}
includedir=${INCLUDEDIR:-$prefix/include}
destdir=${DESTDIR:-}

if [[ $build == --uninstall ]]; then
    # The versioned object is the one the libsecurechannel.so link names.
    soname=$(readlink "$destdir$libdir/libsecurechannel.so" 2>/dev/null || true)
    [[ -z $soname || $soname == */* ]] || rm -f "$destdir$libdir/$soname"
    rm -f "$destdir$libdir/libsecurechannel.so" "$destdir$libdir/libsecurechannel.a" \
          "$destdir$libdir/pkgconfig/securechannel.pc" "$destdir$includedir/securechannel.h"
    echo "removed securechannel from $destdir$prefix"
    exit 0
fi
built=$build/libsecurechannel.so
objects=$build/securechannel.product/Objects.LinkFileList
archive=$build/libsecurechannel-static.a
header=Sources/CSecureChannelABI/include/securechannel.h
for file in "$built" "$objects" "$archive"; do
    [[ -f $file ]] || { echo "install-lib: $file is missing; build it with: swift build --product securechannel and --product securechannel-static (make install-lib does)" >&2; exit 1; }
done

# The version sc_version reports; its major number is the ABI's, the soname's.
version=$(grep -ao 'securechannel [0-9][0-9.]*' "$built" | head -n1 | cut -d' ' -f2)
[[ -n $version ]] || { echo "install-lib: cannot read the version (sc_version) of $built" >&2; exit 1; }
soname=libsecurechannel.so.${version%%.*}

# The shared object, linked by the toolchain's swiftc, which adds what
# SwiftPM's link adds: the Swift runtime's directory as RUNPATH and the
# libraries the objects ask for (their autolink entries: libsodium, Xen's
# guest libraries, Foundation).
swiftc=${SWIFTC:-$(command -v swiftc || echo /opt/swift/usr/bin/swiftc)}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
shared=$scratch/$soname
"$swiftc" -emit-library -o "$shared" "@$objects" \
    -Xlinker "--version-script=$PWD/Sources/SecureChannelABI/exports.map" -Xlinker "-soname=$soname" \
    || { echo "install-lib: linking $soname from $objects failed" >&2; exit 1; }

# Where the Swift runtime lives: the RUNPATH entry holding libswiftCore.so.
runtime=""
IFS=: read -ra paths <<< "$(readelf -d "$shared" | sed -n 's/.*Library runpath: \[\(.*\)\]/\1/p')"
for path in "${paths[@]}"; do
    if [[ -f $path/libswiftCore.so ]]; then runtime=$path; break; fi
done
[[ -n $runtime ]] || { echo "install-lib: $shared has no RUNPATH entry with libswiftCore.so; is it a build of this package?" >&2; exit 1; }

# Static linking needs what the shared object needs (its NEEDED entries, as
# -l flags) and the Swift runtime's image registration object, swiftrt.o.
# The runtime's directory is given as -Wl,-L: it is the toolchain's, not
# part of what was installed, and pkg-config leaves -Wl flags as they are
# (a -L would be listed by --libs-only-L and moved under a sysroot).
private=""
while read -r needed; do
    case $needed in
        libc.so.*|ld-linux*|libsecurechannel*) ;;
        *) name=${needed#lib}; private+=" -l${name%%.so*}" ;;
    esac
done < <(readelf -d "$shared" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
swiftrt=$runtime/$(uname -m)/swiftrt.o
[[ -f $swiftrt ]] || { echo "install-lib: no $swiftrt in the Swift toolchain; static linking needs it" >&2; exit 1; }

install -d "$destdir$includedir" "$destdir$libdir/pkgconfig"
install -m 0644 "$header" "$destdir$includedir/securechannel.h"
install -m 0755 "$shared" "$destdir$libdir/$soname"
ln -sf "$soname" "$destdir$libdir/libsecurechannel.so"
install -m 0644 "$archive" "$destdir$libdir/libsecurechannel.a"
# Paths under the prefix are written relative to it, so that
# pkg-config --define-prefix finds a DESTDIR tree (or a moved one) where it is.
relative() { [[ $1 == "$prefix"/* ]] && echo "\${prefix}${1#"$prefix"}" || echo "$1"; }
cat > "$destdir$libdir/pkgconfig/securechannel.pc" <<PC
prefix=$prefix
libdir=$(relative "$libdir")
includedir=$(relative "$includedir")

Name: securechannel
Description: Secure inter-VM channels on Xen altp2m: the C interface (securechannel.h)
Version: $version
Cflags: -I\${includedir}
Libs: -L\${libdir} -lsecurechannel
Libs.private: $swiftrt -Wl,-L$runtime -Wl,-rpath,$runtime$private
PC
echo "installed securechannel $version ($soname) under $destdir$prefix; the Swift runtime stays in $runtime"
