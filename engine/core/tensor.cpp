#include "engine/core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <sstream>
#include <stdexcept>

#include "engine/core/error.h"

namespace agilenn {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i32: return 4;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::i32: return "int32";
    case DType::u8: return "uint8";
  }
  return "?";
}

bool is_floating(DType t) { return t == DType::f32 || t == DType::f64; }

const char* device_name(Device d) { return d == Device::cpu ? "cpu" : "cuda"; }

int64_t numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) {
    AGILENN_CHECK(d >= 0, "shape " << shape_str(s) << " has a negative dimension");
    AGILENN_CHECK(!__builtin_mul_overflow(n, d, &n), "shape " << shape_str(s) << " has more elements than int64 holds");
  }
  return n;
}

size_t bytes_of(const Shape& s, DType t) {
  const int64_t n = numel(s);
  AGILENN_CHECK(static_cast<uint64_t>(n) <= (uint64_t{1} << 62) / dtype_size(t),
                "shape " << shape_str(s) << " " << dtype_name(t) << " is larger than any memory");
  return static_cast<size_t>(n) * dtype_size(t);
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < s.size(); ++i) os << (i ? "," : "") << s[i];
  os << ']';
  return os.str();
}

std::vector<int64_t> contiguous_strides(const Shape& s) {
  std::vector<int64_t> st(s.size(), 1);
  for (int i = static_cast<int>(s.size()) - 2; i >= 0; --i) st[i] = st[i + 1] * s[i + 1];
  return st;
}

int64_t offset_of(const std::vector<int64_t>& index, const std::vector<int64_t>& strides) {
  int64_t off = 0;
  for (size_t i = 0; i < index.size(); ++i) off += index[i] * strides[i];
  return off;
}

Storage::Storage(void* data, size_t bytes, Device device, Deleter deleter)
    : data_(data), bytes_(bytes), device_(device), deleter_(deleter) {}

Storage::~Storage() {
  if (deleter_ && data_) deleter_(data_);
}

namespace {
// 64-byte alignment keeps every arena offset and every tensor SIMD- and cache-line aligned.
constexpr size_t kHostAlignment = 64;
void free_host(void* p) { std::free(p); }
}  // namespace

std::shared_ptr<Storage> Storage::allocate_host(size_t bytes) {
  size_t rounded = (bytes + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
  if (rounded == 0) rounded = kHostAlignment;
  void* p = std::aligned_alloc(kHostAlignment, rounded);
  if (!p) throw std::bad_alloc();
  return std::make_shared<Storage>(p, rounded, Device::cpu, &free_host);
}

Tensor::Tensor(Shape shape, DType dtype, std::shared_ptr<Storage> storage, size_t offset_bytes)
    : shape_(std::move(shape)), numel_(agilenn::numel(shape_)), dtype_(dtype), storage_(std::move(storage)),
      offset_(offset_bytes) {
  AGILENN_CHECK(storage_ && bytes_of(shape_, dtype_) <= storage_->bytes() && offset_ <= storage_->bytes() - nbytes(),
                "tensor of shape " << shape_str(shape_) << " " << dtype_name(dtype_)
                                   << " does not fit its storage");
}

Tensor Tensor::zeros(Shape shape, DType dtype) {
  const size_t bytes = bytes_of(shape, dtype);
  auto st = Storage::allocate_host(bytes);
  std::memset(st->data(), 0, st->bytes());
  return Tensor(std::move(shape), dtype, std::move(st));
}

Tensor Tensor::scalar(double value, DType dtype) {
  Tensor t = zeros({}, dtype);
  t.set_item(0, value);
  return t;
}

Tensor Tensor::from_vector(Shape shape, const std::vector<double>& values, DType dtype) {
  Tensor t = zeros(std::move(shape), dtype);
  AGILENN_CHECK(static_cast<int64_t>(values.size()) == t.numel(),
                values.size() << " values given for shape " << shape_str(t.shape()));
  for (size_t i = 0; i < values.size(); ++i) t.set_item(static_cast<int64_t>(i), values[i]);
  return t;
}

void* Tensor::raw() const {
  return storage_ ? static_cast<char*>(storage_->data()) + offset_ : nullptr;
}

double Tensor::item(int64_t i) const {
  AGILENN_CHECK(device() == Device::cpu, "item() needs a host tensor");
  AGILENN_CHECK(i >= 0 && i < numel(), "index " << i << " out of range for " << shape_str(shape_));
  switch (dtype_) {
    case DType::f32: return data<float>()[i];
    case DType::f64: return data<double>()[i];
    case DType::i32: return data<int32_t>()[i];
    case DType::u8: return data<uint8_t>()[i];
  }
  return 0;
}

void Tensor::set_item(int64_t i, double v) {
  AGILENN_CHECK(device() == Device::cpu, "set_item() needs a host tensor");
  AGILENN_CHECK(i >= 0 && i < numel(), "index " << i << " out of range for " << shape_str(shape_));
  switch (dtype_) {
    case DType::f32: data<float>()[i] = static_cast<float>(v); break;
    case DType::f64: data<double>()[i] = v; break;
    case DType::i32: data<int32_t>()[i] = static_cast<int32_t>(v); break;
    case DType::u8: data<uint8_t>()[i] = static_cast<uint8_t>(v); break;
  }
}

std::vector<double> Tensor::to_vector() const {
  std::vector<double> v(static_cast<size_t>(numel()));
  for (int64_t i = 0; i < numel(); ++i) v[static_cast<size_t>(i)] = item(i);
  return v;
}

Tensor Tensor::clone() const { return to(dtype_); }

Tensor Tensor::to(DType dtype) const {
  AGILENN_CHECK(device() == Device::cpu, "to()/clone() copy host tensors; use the backend for device tensors");
  Tensor out = zeros(shape_, dtype);
  if (dtype == dtype_) {
    std::memcpy(out.raw(), raw(), nbytes());
  } else {
    for (int64_t i = 0; i < numel(); ++i) out.set_item(i, item(i));
  }
  return out;
}

Tensor Tensor::permuted(const std::vector<size_t>& perm) const {
  AGILENN_CHECK(device() == Device::cpu, "permuted() copies host tensors");
  AGILENN_CHECK(perm.size() == shape_.size(), "permutation of " << perm.size() << " axes for shape " << shape_str(shape_));
  Shape out(perm.size());
  std::vector<bool> seen(perm.size(), false);
  for (size_t i = 0; i < perm.size(); ++i) {
    AGILENN_CHECK(perm[i] < perm.size() && !seen[perm[i]], "not a permutation of " << perm.size() << " axes");
    seen[perm[i]] = true;
    out[i] = shape_[perm[i]];
  }
  std::vector<int64_t> strides(shape_.size(), 1);
  for (size_t i = shape_.size(); i-- > 1;) strides[i - 1] = strides[i] * shape_[i];
  Tensor r = zeros(out, dtype_);
  const size_t element = dtype_size(dtype_);
  const char* x = static_cast<const char*>(raw());
  char* y = static_cast<char*>(r.raw());
  std::vector<int64_t> index(out.size(), 0);
  for (int64_t k = 0; k < r.numel(); ++k) {
    int64_t from = 0;
    for (size_t i = 0; i < out.size(); ++i) from += index[i] * strides[perm[i]];
    std::memcpy(y + static_cast<size_t>(k) * element, x + static_cast<size_t>(from) * element, element);
    for (size_t i = out.size(); i-- > 0;) {
      if (++index[i] < out[i]) break;
      index[i] = 0;
    }
  }
  return r;
}

void Tensor::copy_from(const Tensor& other) {
  AGILENN_CHECK(other.shape_ == shape_ && other.dtype_ == dtype_,
                "copy_from: " << shape_str(other.shape_) << " " << dtype_name(other.dtype_) << " into "
                              << shape_str(shape_) << " " << dtype_name(dtype_));
  AGILENN_CHECK(device() == Device::cpu && other.device() == Device::cpu,
                "copy_from between host tensors only");
  std::memcpy(raw(), other.raw(), nbytes());
}

}  // namespace agilenn
