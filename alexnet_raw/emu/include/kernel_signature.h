// kernel_signature.h: what a kernel's C++ type says about its parameters, for the CPU runtime and
// for the pybind11 extension (built by nvcc or against the CPU runtime).
//
//   param_codes(&kernel)  "p:f32,pc:f32,i64": one type code per parameter, so that Python can check
//                         every argument strictly (alexnet_raw/runtime/kernel_args.py);
//   thunk<&kernel>        calls the kernel with a cuLaunchKernel-style argument array (void**).
#pragma once

#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

namespace emu {

using Thunk = void (*)(void** args);

// Parameter type codes: the Python side checks every argument against them (alexnet_raw/runtime/kernel_args.py).
template <class T, class = void>
struct TypeCode {
  static std::string get() { return "?" + std::to_string(sizeof(T)); }
};
#define EMU_CODE(T, C)                        \
  template <>                                 \
  struct TypeCode<T> {                        \
    static std::string get() { return C; }    \
  };
EMU_CODE(bool, "b8")
EMU_CODE(char, "i8")
EMU_CODE(signed char, "i8")
EMU_CODE(unsigned char, "u8")
EMU_CODE(short, "i16")
EMU_CODE(unsigned short, "u16")
EMU_CODE(int, "i32")
EMU_CODE(unsigned int, "u32")
EMU_CODE(long, sizeof(long) == 8 ? "i64" : "i32")
EMU_CODE(unsigned long, sizeof(long) == 8 ? "u64" : "u32")
EMU_CODE(long long, "i64")
EMU_CODE(unsigned long long, "u64")
EMU_CODE(float, "f32")
EMU_CODE(double, "f64")
EMU_CODE(void, "void")
EMU_CODE(float2, "f32x2")
EMU_CODE(float4, "f32x4")
EMU_CODE(double2, "f64x2")
EMU_CODE(int2, "i32x2")
EMU_CODE(int4, "i32x4")
EMU_CODE(uint2, "u32x2")
EMU_CODE(uint4, "u32x4")
#undef EMU_CODE
template <class T>
struct TypeCode<T*> {
  static std::string get() {
    return std::string(std::is_const<T>::value ? "pc:" : "p:") + TypeCode<std::remove_cv_t<T>>::get();
  }
};
template <class... Args>
inline std::string param_codes(void (*)(Args...)) {
  std::string s;
  ((s += (s.empty() ? "" : ","), s += TypeCode<std::remove_cv_t<Args>>::get()), ...);
  return s;
}
template <class... Args>
constexpr size_t arity(void (*)(Args...)) {
  return sizeof...(Args);
}
template <class... Args, size_t... I>
inline void call_with(void (*f)(Args...), void** a, std::index_sequence<I...>) {
  f(*static_cast<std::remove_cv_t<std::remove_reference_t<Args>>*>(a[I])...);
}
// The launch thunk of kernel F: unpacks a cuLaunchKernel-style argument array.
template <auto F>
void thunk(void** a) {
  call_with(F, a, std::make_index_sequence<arity(F)>{});
}

}  // namespace emu
