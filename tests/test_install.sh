#!/usr/bin/env bash
# test_install.sh — `cmake --install` gives users a working libkvtier.
# ctest: labels=unit;install (registered at the end of CMakeLists.txt)
#
# usage: test_install.sh BUILD_DIR SOURCE_DIR LIBDIR SANITIZE(ON|OFF)
#
# Installs BUILD_DIR into a scratch prefix (BUILD_DIR/install-test), then, as a user would:
#   - checks the files: bin/kvtier, LIBDIR/libkvtier.so*, LIBDIR/libkvtier.a,
#     include/kvtier/kvtier.h, LIBDIR/pkgconfig/kvtier.pc
#   - builds examples/quickstart.c with `cc $(pkg-config --cflags --libs kvtier)` against the
#     shared library, runs it with LD_LIBRARY_PATH and checks its output
#   - builds it again against the static library with `pkg-config --static` (Libs.private,
#     Requires.private) and checks that it does not need libkvtier.so
#   - compiles the header as C++ (extern "C") and runs the installed `kvtier version`
#   - checks that README.md embeds examples/quickstart.c unchanged
# Exit 0 pass, 1 fail, 77 skip (liburing's convention).
set -euo pipefail

if (($# != 4)); then
    echo "usage: $0 BUILD_DIR SOURCE_DIR LIBDIR SANITIZE" >&2
    exit 1
fi
build=$1 src=$2 libdir=$3 sanitize=$4
prefix=$build/install-test
work=$prefix/work
cc=${CC:-cc}
fail() { echo "test_install: FAIL: $*" >&2; exit 1; }

for tool in "$cc" pkg-config readelf; do
    command -v "$tool" >/dev/null || { echo "skip: $tool not found" >&2; exit 77; }
done

# A sanitized libkvtier needs the sanitizer runtimes in the program too: build the example
# the same way (an ordinary program linked against it would fail to link, by design).
extra=()
if [[ $sanitize == ON || $sanitize == 1 ]]; then
    # shellcheck disable=SC2054
    extra=(-fsanitize=address,undefined -fno-omit-frame-pointer)
fi

# The README embeds examples/quickstart.c; keep the two the same.
if ! diff -u "$src/examples/quickstart.c" \
    <(awk '/<!-- quickstart.c: begin/{on=1; next} /<!-- quickstart.c: end/{on=0} on' \
        "$src/README.md" | sed '1{/^```c$/d}; ${/^```$/d}') >&2; then
    fail "README.md's example differs from examples/quickstart.c (diff above): copy it over"
fi

rm -rf "$prefix"
cmake --install "$build" --prefix "$prefix" >"$build/install-test.log" 2>&1 ||
    { cat "$build/install-test.log" >&2; fail "cmake --install $build --prefix $prefix"; }
mkdir -p "$work"

for f in bin/kvtier "$libdir/libkvtier.so" "$libdir/libkvtier.a" include/kvtier/kvtier.h \
         "$libdir/pkgconfig/kvtier.pc"; do
    [[ -e $prefix/$f ]] || fail "cmake --install did not install $f"
done
ls "$prefix/$libdir"/libkvtier.so.* >/dev/null 2>&1 || fail "no versioned libkvtier.so.N (SONAME)"
# The shared library exports the public API only: kvt_* (kvt__* are the tests' hooks, which
# link the static library), nothing of the internal modules.
if command -v nm >/dev/null; then
    syms=$(nm -D --defined-only "$prefix/$libdir/libkvtier.so" | awk '$2 ~ /^[TDBRW]$/ {print $3}')
    bad=$(grep -v '^kvt_' <<<"$syms" | grep -v '^_' || true)
    hooks=$(grep '^kvt__' <<<"$syms" || true)
    [[ -z $bad && -z $hooks ]] || fail "libkvtier.so exports more than kvt_*: ${bad} ${hooks}"
    grep -q '^kvt_replace_key$' <<<"$syms" || fail "libkvtier.so does not export kvt_replace_key"
fi
echo "installed: $(cd "$prefix" && find . -type f -not -path './work/*' | sort | tr '\n' ' ')"

# kvtier.pc must be relocatable (prefix=${pcfiledir}/...): a package unpacked anywhere works.
# Move the whole installation elsewhere before using it, so a hard-coded prefix would fail.
pcline=$(grep '^prefix=' "$prefix/$libdir/pkgconfig/kvtier.pc")
[[ $pcline == 'prefix=${pcfiledir}/'* ]] || fail "kvtier.pc is not relocatable: '$pcline'"
moved=$build/install-test-moved
rm -rf "$moved"
mv "$prefix" "$moved"
prefix=$moved
work=$prefix/work
pcdir=$prefix/$libdir/pkgconfig
export PKG_CONFIG_PATH=$pcdir
pc=(pkg-config)
"${pc[@]}" --exists kvtier || fail "pkg-config does not find kvtier in $PKG_CONFIG_PATH"
read -r -a cflags <<<"$("${pc[@]}" --cflags kvtier)"
read -r -a libs <<<"$("${pc[@]}" --libs kvtier)"
read -r -a slibs <<<"$("${pc[@]}" --static --libs kvtier)"
echo "pkg-config: cflags: ${cflags[*]}"
echo "pkg-config: libs: ${libs[*]}"
echo "pkg-config: static libs: ${slibs[*]}"
incdir_ok=0
for f in "${cflags[@]}"; do
    [[ $f == -I* && $(realpath -m "${f#-I}") == $(realpath -m "$prefix/include") ]] && incdir_ok=1
done
((incdir_ok)) || fail "pkg-config --cflags kvtier lacks -I$prefix/include"

want="stored 2 blocks, matched 32 of 64 tokens, bytes identical"
warn=(-std=c11 -Wall -Wextra -Wpedantic -Werror)

# Shared library.
"$cc" "${warn[@]}" ${extra[@]+"${extra[@]}"} "${cflags[@]}" "$src/examples/quickstart.c" \
    -o "$work/quickstart" "${libs[@]}" || fail "building quickstart.c against libkvtier.so"
# (Outputs are captured before grep: with pipefail, grep -q exiting early would make the
# writer's SIGPIPE fail the pipeline at random.)
dyn=$(readelf -d "$work/quickstart")
grep -q 'NEEDED.*libkvtier\.so' <<<"$dyn" ||
    fail "quickstart (shared) does not link libkvtier.so"
out=$(LD_LIBRARY_PATH=$prefix/$libdir "$work/quickstart") || fail "quickstart (shared) exited $?"
echo "shared: $out"
[[ $out == "$want" ]] || fail "quickstart (shared) printed '$out', want '$want'"
deps=$(LD_LIBRARY_PATH=$prefix/$libdir ldd "$work/quickstart")
grep -q "libkvtier.so.* => $prefix/" <<<"$deps" ||
    fail "quickstart (shared) did not load the installed libkvtier.so"

# Static library: -lkvtier would pick the .so, so ask for the archive by name; everything
# else it needs must come from kvtier.pc's Libs.private / Requires.private.
slibs_a=()
for a in "${slibs[@]}"; do
    [[ $a == -lkvtier ]] && a=-l:libkvtier.a
    slibs_a+=("$a")
done
"$cc" "${warn[@]}" ${extra[@]+"${extra[@]}"} "${cflags[@]}" "$src/examples/quickstart.c" \
    -o "$work/quickstart-static" "${slibs_a[@]}" ||
    fail "building quickstart.c against libkvtier.a with \`pkg-config --static --libs kvtier\`:" \
         "kvtier.pc's Libs.private/Requires.private lack a library libkvtier.a needs (see the" \
         "undefined symbols above)"
dyn=$(readelf -d "$work/quickstart-static")
if grep -q 'NEEDED.*libkvtier' <<<"$dyn"; then
    fail "quickstart-static still needs libkvtier.so"
fi
out=$("$work/quickstart-static") || fail "quickstart (static) exited $?"
echo "static: $out"
[[ $out == "$want" ]] || fail "quickstart (static) printed '$out', want '$want'"

# The header is usable from C++ (extern "C", no C-only constructs in declarations).
if command -v c++ >/dev/null; then
    printf '#include <kvtier/kvtier.h>\nint main() { return kvt_strerror(0) == nullptr; }\n' \
        >"$work/cxx.cc"
    c++ -std=c++17 -Wall -Wextra -Werror "${cflags[@]}" -fsyntax-only "$work/cxx.cc" ||
        fail "kvtier.h does not compile as C++"
fi

# The installed program runs (it is linked statically against libkvtier).
ver=$("$prefix/bin/kvtier" version) || fail "installed kvtier version exited $?"
echo "program: $ver"
[[ $ver == kvtier\ * ]] || fail "kvtier version printed '$ver'"

echo "test_install: ok"
