// Bindings for value comparison, stats, casts and copies (csrc/compare.*, csrc/convert.*).
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_numeric(py::module_& m) { (void)m; }
