// A zip's members as the core keeps them (zipdir::Table) with the Python class its members are
// made as when one is asked for (zipfile_safe.ZipMember). torch_zip_layout returns one;
// zipfile_safe.CompiledMembers is its Mapping face, and the pickle builder looks storages up in
// it without a Python object per record.
#pragma once

#include <pybind11/pybind11.h>

#include "objects.hpp"
#include "zip_directory.hpp"

namespace inspector_bindings {

struct ZipTable {
    inspector::zipdir::Table table;
    pybind11::object member;  // the class members are made as (kept alive for `maker`)
    FrozenMaker maker;        // makes them (its slots looked up once, not per member asked for)
};

}  // namespace inspector_bindings
