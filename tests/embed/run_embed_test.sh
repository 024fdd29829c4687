#!/usr/bin/env bash
# Installs the build into a temporary prefix, then configures, builds and runs
# tests/embed against it through find_package(kvant): shared and static.
# usage: run_embed_test.sh BUILD_DIR SOURCE_DIR WORK_DIR
set -eu
build=$1 src=$2 work=$3
rm -rf "$work"
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$src/tests/embed" -B "$work/app" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
cmake --build "$work/app" >/dev/null
"$work/app/embed_example" "$src/models/digits/digits.onnx"
"$work/app/embed_example_static" "$src/models/digits/digits.onnx"
echo "embedding through find_package(kvant): ok"
