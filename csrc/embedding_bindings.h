// Python bindings of embedding_ops.h (chroma._core.embedding_*), included by
// bindings.cpp. Every array is checked here, with the GIL held; the kernels
// run in place on the caller's float32 buffers with the GIL released.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <string>

#include "embedding_ops.h"

namespace chroma {
namespace embedding_bindings {

namespace py = pybind11;
namespace ops = embedding_ops;

inline std::atomic<const ops::Kernels*>& current_kernels() {
    static std::atomic<const ops::Kernels*> kernels{&ops::select_kernels("")};
    return kernels;
}

inline const char* kernels_name(const ops::Kernels* k) {
#if defined(CHROMA_EMB_X86_TARGETS)
    if (k == &ops::kernels_avx512) return "avx512";
    if (k == &ops::kernels_avx2) return "avx2";
#endif
    (void)k;
    return "portable";
}

// A writable C-contiguous float32 array of `ndim` dimensions, never a copy:
// the kernels write into it.
inline py::array_t<float> buffer(const py::object& obj, const char* what, int ndim) {
    if (!py::isinstance<py::array_t<float>>(obj))
        throw py::type_error(std::string(what) + " must be a float32 numpy array");
    auto arr = py::reinterpret_borrow<py::array_t<float>>(obj);
    if (arr.ndim() != ndim) throw std::invalid_argument(std::string(what) + " has the wrong number of dimensions");
    if (!(arr.flags() & py::array::c_style)) throw std::invalid_argument(std::string(what) + " must be C-contiguous");
    if (!arr.writeable()) throw std::invalid_argument(std::string(what) + " must be writeable");
    return arr;
}

inline void check_length(const py::array_t<float>& arr, size_t n, const char* what) {
    if (size_t(arr.size()) != n)
        throw std::invalid_argument(std::string(what) + " must hold " + std::to_string(n) + " values");
}

inline void register_functions(py::module_& m) {
    m.def(
        "embedding_simd_path", [](const std::string& name) {
            if (!name.empty()) current_kernels().store(&ops::select_kernels(name));
            return std::string(kernels_name(current_kernels().load()));
        },
        py::arg("name") = "",
        "The instruction set of the embedding kernels; a name (portable, avx2, avx512) switches to it.");

    m.def(
        "embedding_bias_gelu", [](const py::object& x_obj, const py::object& bias_obj, bool parallel) {
            auto x = buffer(x_obj, "x", 2), bias = buffer(bias_obj, "bias", 1);
            const size_t rows = x.shape(0), width = x.shape(1);
            check_length(bias, width, "bias");
            float* xp = x.mutable_data();
            const float* bp = bias.data();
            const ops::Kernels& k = *current_kernels().load();
            py::gil_scoped_release nogil;
            ops::bias_gelu(k, xp, bp, rows, width, parallel);
        },
        py::arg("x"), py::arg("bias"), py::arg("parallel") = true,
        "x = gelu(x + bias) in place (exact, erf-based GELU); on the core's threads unless parallel is False.");

    m.def(
        "embedding_residual_layer_norm",
        [](const py::object& x_obj, const py::object& bias_obj, const py::object& hidden_obj,
           const py::object& gamma_obj, const py::object& beta_obj, float eps, bool parallel) {
            auto hidden = buffer(hidden_obj, "hidden", 2);
            const size_t rows = hidden.shape(0), width = hidden.shape(1);
            const float* xp = nullptr;
            py::array_t<float> x;
            if (!x_obj.is_none()) {
                x = buffer(x_obj, "x", 2);
                if (size_t(x.shape(0)) != rows || size_t(x.shape(1)) != width)
                    throw std::invalid_argument("x must have the shape of hidden");
                xp = x.data();
            }
            auto bias = buffer(bias_obj, "bias", 1), gamma = buffer(gamma_obj, "gamma", 1),
                 beta = buffer(beta_obj, "beta", 1);
            check_length(bias, width, "bias");
            check_length(gamma, width, "gamma");
            check_length(beta, width, "beta");
            float* hp = hidden.mutable_data();
            const ops::Kernels& k = *current_kernels().load();
            py::gil_scoped_release nogil;
            ops::residual_layer_norm(k, xp, bias.data(), hp, gamma.data(), beta.data(), eps, rows, width, parallel);
        },
        py::arg("x"), py::arg("bias"), py::arg("hidden"), py::arg("gamma"), py::arg("beta"), py::arg("eps"),
        py::arg("parallel") = true,
        "hidden = layer_norm(x + bias + hidden) * gamma + beta in place (x None: of hidden + bias).");

    m.def(
        "embedding_attention",
        [](const py::object& qkv_obj, const py::object& bias_obj, const py::array_t<int64_t, py::array::c_style>& offsets,
           const py::object& ctx_obj, size_t heads, bool parallel) {
            auto qkv = buffer(qkv_obj, "qkv", 2), bias = buffer(bias_obj, "qkv_bias", 1),
                 ctx = buffer(ctx_obj, "ctx", 2);
            const size_t rows = qkv.shape(0), hidden = ctx.shape(1);
            if (size_t(qkv.shape(1)) != 3 * hidden || size_t(ctx.shape(0)) != rows)
                throw std::invalid_argument("qkv must be rows x 3*hidden and ctx rows x hidden");
            check_length(bias, 3 * hidden, "qkv_bias");
            if (offsets.ndim() != 1 || offsets.size() < 1) throw std::invalid_argument("offsets must be 1-D");
            const int64_t* off = offsets.data();
            const size_t nseq = size_t(offsets.size()) - 1;
            if (off[0] != 0 || size_t(off[nseq]) != rows)
                throw std::invalid_argument("offsets must run from 0 to the number of rows");
            for (size_t s = 0; s < nseq; ++s)
                if (off[s + 1] <= off[s]) throw std::invalid_argument("every sequence needs at least one row");
            float* cp = ctx.mutable_data();
            const ops::Kernels& k = *current_kernels().load();
            py::gil_scoped_release nogil;
            ops::attention(k, qkv.data(), bias.data(), cp, off, nseq, heads, hidden, parallel);
        },
        py::arg("qkv"), py::arg("qkv_bias"), py::arg("offsets"), py::arg("ctx"), py::arg("heads"),
        py::arg("parallel") = true,
        "ctx = multi-head self-attention of the packed sequences (rows offsets[s]..offsets[s+1]).");
}

}  // namespace embedding_bindings
}  // namespace chroma
