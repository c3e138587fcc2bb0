#include "engine/models/import_reference.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "engine/core/error.h"
#include "engine/io/checkpoint.h"
#include "engine/models/agilenn.h"

namespace agilenn::models {
namespace {

// Where an engine layer of the reference net ("stem", "stage3.block0.se.reduce", ...) lives in
// the file. torchvision: features.0 is the stem, features.1..S the stages, features.S+1 the
// head conv, classifier.1 the dense layer; inside a block, `block` holds its sub-layers in
// order, each a Conv2dNormActivation (.0 conv, .1 batch norm) or the SE's fc1/fc2. Keras:
// stem_conv, block<stage+1><letter of the block>_<layer>, top_conv, predictions.
std::string source_layer(const std::string& layer, const AgileNNPreset& p, WeightsFormat f) {
  const bool torch = f == WeightsFormat::torchvision;
  const auto stages = static_cast<int64_t>(p.reference.stages.size());
  static const std::map<std::string, std::pair<std::string, std::string>> top{
      {"stem", {"features.0.0", "stem_conv"}},  {"stem_bn", {"features.0.1", "stem_bn"}},
      {"head", {"features.H.0", "top_conv"}},   {"head_bn", {"features.H.1", "top_bn"}},
      {"classifier", {"classifier.1", "predictions"}}};
  if (const auto it = top.find(layer); it != top.end()) {
    std::string name = torch ? it->second.first : it->second.second;
    if (const size_t h = name.find('H'); h != std::string::npos) name.replace(h, 1, std::to_string(stages + 1));
    return name;
  }
  int stage = -1, block = -1, used = 0;
  AGILENN_CHECK(std::sscanf(layer.c_str(), "stage%d.block%d.%n", &stage, &block, &used) == 2 && used > 0 &&
                    stage >= 0 && stage < stages,
                "reference net layer '" << layer << "' has no counterpart in EfficientNetV2-S");
  const std::string sub = layer.substr(static_cast<size_t>(used));
  const EfficientStage& st = p.reference.stages[static_cast<size_t>(stage)];
  if (!torch) {
    static const std::map<std::string, std::string> keras{
        {"conv", "project_conv"},    {"conv_bn", "project_bn"}, {"expand", "expand_conv"}, {"expand_bn", "expand_bn"},
        {"depthwise", "dwconv2"},    {"depthwise_bn", "bn"},    {"se.reduce", "se_reduce"}, {"se.expand", "se_expand"},
        {"project", "project_conv"}, {"project_bn", "project_bn"}};
    AGILENN_CHECK(block < 26 && keras.count(sub), "reference net layer '" << layer << "' has no Keras counterpart");
    return "block" + std::to_string(stage + 1) + static_cast<char>('a' + block) + "_" + keras.at(sub);
  }
  // torchvision's sub-layer order: Fused-MBConv [conv] or [expand, project]; MBConv
  // [expand if any, depthwise, SE if any, project].
  std::vector<std::string> order;
  if (st.block == EfficientStage::fused_mbconv) {
    AGILENN_CHECK(st.se_ratio == 0, "torchvision's Fused-MBConv has no squeeze-excite (stage " << stage << ")");
    order = st.expand == 1 ? std::vector<std::string>{"conv"} : std::vector<std::string>{"expand", "project"};
  } else {
    if (st.expand != 1) order.push_back("expand");
    order.push_back("depthwise");
    if (st.se_ratio > 0) order.push_back("se");
    order.push_back("project");
  }
  const bool bn = sub.ends_with("_bn");
  const std::string base = bn ? sub.substr(0, sub.size() - 3) : sub.substr(0, sub.find('.'));
  const auto at = std::find(order.begin(), order.end(), base);
  AGILENN_CHECK(at != order.end(), "reference net layer '" << layer << "' has no torchvision counterpart");
  std::string name = "features." + std::to_string(stage + 1) + "." + std::to_string(block) + ".block." +
                     std::to_string(at - order.begin());
  if (base == "se") return name + (sub == "se.reduce" ? ".fc1" : ".fc2");
  return name + (bn ? ".1" : ".0");
}

std::string source_leaf(const std::string& leaf, const std::string& layer, WeightsFormat f) {
  static const std::map<std::string, std::pair<std::string, std::string>> leaves{
      {"weight", {"weight", "kernel"}},          {"bias", {"bias", "bias"}},
      {"gamma", {"weight", "gamma"}},            {"beta", {"bias", "beta"}},
      {"moving_mean", {"running_mean", "moving_mean"}}, {"moving_var", {"running_var", "moving_variance"}}};
  const auto it = leaves.find(leaf);
  AGILENN_CHECK(it != leaves.end(), "reference net tensor '" << layer << "." << leaf << "' has no counterpart");
  if (f == WeightsFormat::torchvision) return it->second.first;
  return leaf == "weight" && layer.ends_with("depthwise") ? "depthwise_kernel" : it->second.second;
}

// torchvision: conv OIHW (depthwise [C,1,KH,KW]) and dense [out,in]; Keras: conv HWIO as the
// engine, depthwise [KH,KW,C,1], dense [in,out].
std::vector<size_t> layout_to_engine(size_t rank, bool depthwise, WeightsFormat f) {
  if (f == WeightsFormat::torchvision) {
    if (rank == 4) return {2, 3, 1, 0};
    if (rank == 2) return {1, 0};
  } else if (rank == 4 && depthwise) {
    return {0, 1, 3, 2};
  }
  std::vector<size_t> identity(rank);
  for (size_t i = 0; i < rank; ++i) identity[i] = i;
  return identity;
}

}  // namespace

WeightsFormat parse_weights_format(const std::string& name) {
  if (name == "torchvision") return WeightsFormat::torchvision;
  if (name == "keras") return WeightsFormat::keras;
  AGILENN_THROW("unknown weights format '" << name << "' (torchvision, keras)");
}

const char* weights_format_name(WeightsFormat f) { return f == WeightsFormat::torchvision ? "torchvision" : "keras"; }

ops::Padding weights_padding(WeightsFormat f) {
  return f == WeightsFormat::torchvision ? ops::Padding::symmetric : ops::Padding::same;
}

std::string weights_normalization(WeightsFormat f) { return f == WeightsFormat::torchvision ? "imagenet" : "signed"; }

ImportedWeights import_reference_weights(const std::string& path, const AgileNNPreset& preset,
                                         const ImportOptions& options) {
  const WeightsFormat f = options.format;
  io::SafetensorsFile file = io::read_safetensors(path);
  // Keras 2 names variables "layer/kernel:0"; Keras 3 "layer/kernel".
  nn::TensorMap source;
  for (auto& [name, t] : file.tensors)
    source[f == WeightsFormat::keras && name.ends_with(":0") ? name.substr(0, name.size() - 2) : name] = t;

  Graph g;
  nn::ParamSet params;
  const nn::Scope root(g, params, false);
  reference_net(root.child("ref"), ops::leaf(g, "images", {1, preset.input_size, preset.input_size, 3}, DType::f32),
                preset, options.classes);
  const nn::TensorMap fresh = params.initialise(options.seed, DType::f32);

  ImportedWeights out;
  std::set<std::string> used;
  const std::string classifier = source_layer("classifier", preset, f);
  for (const nn::ParamInfo& info : params.all()) {
    const std::string name = info.name.substr(info.name.find('.') + 1);  // without "ref."
    const size_t dot = name.rfind('.');
    const std::string layer = name.substr(0, dot), leaf = name.substr(dot + 1);
    if (layer == "classifier" && !options.keep_classifier) {
      out.values[info.name] = fresh.at(info.name);
      continue;
    }
    const std::string from = source_layer(layer, preset, f) + (f == WeightsFormat::keras ? "/" : ".") +
                             source_leaf(leaf, layer, f);
    const auto it = source.find(from);
    AGILENN_CHECK(it != source.end(), "'" << path << "' has no tensor '" << from << "' (for the engine's '"
                                          << info.name << "'): is it EfficientNetV2-S weights in "
                                          << weights_format_name(f) << "'s names?");
    const Tensor& t = it->second;
    AGILENN_CHECK(t.shape().size() == info.shape.size(),
                  "'" << path << "': tensor '" << from << "' is " << shape_str(t.shape()) << "; the engine's '"
                      << info.name << "' needs " << shape_str(info.shape) << " (in the engine's layout)");
    Tensor value = t.to(DType::f32).permuted(layout_to_engine(info.shape.size(), layer.ends_with("depthwise"), f));
    AGILENN_CHECK(value.shape() == info.shape,
                  "'" << path << "': tensor '" << from << "' is " << shape_str(t.shape()) << ", "
                      << shape_str(value.shape()) << " in the engine's layout; the engine's '" << info.name
                      << "' needs " << shape_str(info.shape)
                      << (layer == "classifier" ? " (the dataset's classes; leave the classifier out to replace it)"
                                                : ""));
    out.values[info.name] = value;
    used.insert(from);
  }
  for (const auto& [name, t] : source) {
    if (used.count(name)) continue;
    if (!options.keep_classifier && name.starts_with(classifier + (f == WeightsFormat::keras ? "/" : "."))) {
      out.replaced.push_back(name + " " + shape_str(t.shape()));
      continue;
    }
    AGILENN_THROW("'" << path << "': tensor '" << name << "' " << shape_str(t.shape())
                      << " maps to nothing in the engine's EfficientNetV2-S (preset " << preset.name
                      << "): is the file another architecture?");
  }
  for (const auto& [name, dtype] : file.other_dtypes)
    AGILENN_CHECK(f == WeightsFormat::torchvision && name.ends_with("num_batches_tracked"),
                  "'" << path << "': tensor '" << name << "' has dtype " << dtype
                      << ", which no EfficientNetV2-S weight has");
  return out;
}

}  // namespace agilenn::models
