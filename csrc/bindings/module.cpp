// inspector._core: wiring only. Each register_*.cpp converts arguments for one part of the core.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void register_errors(py::module_& m);
void register_hash(py::module_& m);
void register_numeric(py::module_& m);
void register_header(py::module_& m);
void register_pickle(py::module_& m);
void register_zip(py::module_& m);
void register_objects(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "ckpt-inspector compiled core: hashing, comparison and byte copying";
#ifdef INSPECTOR_HAVE_CUDA
    m.attr("has_cuda") = true;
#else
    m.attr("has_cuda") = false;
#endif
    register_errors(m);
    register_hash(m);
    register_numeric(m);
    register_header(m);
    register_pickle(m);
    register_zip(m);
    register_objects(m);
}
