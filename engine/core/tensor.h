// Tensor: a shape, a dtype, a device and a view into reference-counted storage.
// Images are NHWC (channels innermost) throughout the engine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace agilenn {

enum class DType : uint8_t { f32, f64, i32, u8 };
enum class Device : uint8_t { cpu, cuda };

size_t dtype_size(DType t);

// Calls f(T{}) with T the C++ type of dtype t.
template <class F>
void dispatch_any(DType t, F&& f) {
  switch (t) {
    case DType::f32: f(float{}); return;
    case DType::f64: f(double{}); return;
    case DType::i32: f(int32_t{}); return;
    case DType::u8: f(uint8_t{}); return;
  }
}

// Calls f(U{}) with U the unsigned type of dtype t's size (1, 4 or 8 bytes): for kernels
// that only move elements.
template <class F>
void dispatch_bytes(DType t, F&& f) {
  if (dtype_size(t) == 1) f(uint8_t{});
  else if (dtype_size(t) == 4) f(uint32_t{});
  else f(uint64_t{});
}
const char* dtype_name(DType t);
bool is_floating(DType t);
const char* device_name(Device d);

using Shape = std::vector<int64_t>;

// Throws on a negative dimension or a count past int64 (shapes may come from files).
int64_t numel(const Shape& s);
// numel(s) · dtype_size(t), throwing when it does not fit in memory's address range.
size_t bytes_of(const Shape& s, DType t);
std::string shape_str(const Shape& s);
// Row-major strides in elements.
std::vector<int64_t> contiguous_strides(const Shape& s);
// The element offset of a multi-index under `strides`.
int64_t offset_of(const std::vector<int64_t>& index, const std::vector<int64_t>& strides);

// Owns one allocation on one device. Freed through the deleter it was made with,
// so a backend can hand out memory from its own allocator.
class Storage {
 public:
  using Deleter = void (*)(void*);
  Storage(void* data, size_t bytes, Device device, Deleter deleter);
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage();

  static std::shared_ptr<Storage> allocate_host(size_t bytes);

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void* data_;
  size_t bytes_;
  Device device_;
  Deleter deleter_;
};

class Tensor {
 public:
  Tensor() = default;
  // Contiguous view of `storage` starting at `offset_bytes`.
  Tensor(Shape shape, DType dtype, std::shared_ptr<Storage> storage, size_t offset_bytes = 0);

  // Fresh zero-filled host tensor.
  static Tensor zeros(Shape shape, DType dtype);
  static Tensor scalar(double value, DType dtype);
  static Tensor from_vector(Shape shape, const std::vector<double>& values, DType dtype);

  const Shape& shape() const { return shape_; }
  int64_t dim(size_t i) const { return shape_.at(i); }
  size_t rank() const { return shape_.size(); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::cpu; }
  int64_t numel() const { return numel_; }
  size_t nbytes() const { return static_cast<size_t>(numel_) * dtype_size(dtype_); }
  bool defined() const { return storage_ != nullptr; }

  void* raw() const;
  template <class T>
  T* data() const {
    return static_cast<T*>(raw());
  }

  // Element access through double; host tensors only. For tests, I/O and scalars.
  double item(int64_t flat_index) const;
  void set_item(int64_t flat_index, double value);
  std::vector<double> to_vector() const;

  // Deep copy into a fresh host tensor, optionally converting the dtype.
  Tensor clone() const;
  Tensor to(DType dtype) const;
  // A host copy with the axes reordered: axis i of the result is axis perm[i] of this.
  Tensor permuted(const std::vector<size_t>& perm) const;
  void copy_from(const Tensor& other);

  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t offset_bytes() const { return offset_; }

 private:
  Shape shape_;
  int64_t numel_ = 1;  // of shape_, checked once
  DType dtype_ = DType::f32;
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
};

}  // namespace agilenn
