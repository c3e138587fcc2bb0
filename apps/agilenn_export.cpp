// agilenn-export: a trained AgileNN checkpoint as the deployable split. A thin command line
// over engine/export/export.h.
#include <CLI/CLI.hpp>

#include <iostream>

#include "engine/export/export.h"
#include "engine/runtime/backend_registry.h"

int main(int argc, char** argv) {
  CLI::App app{"agilenn-export: write a trained AgileNN model's device and server halves, codec and manifest"};
  agilenn::exporting::ExportOptions o;
  std::string device = "cpu";
  app.add_option("checkpoint", o.checkpoint, "an AgileNN checkpoint written by `agilenn-train train`")->required();
  app.add_option("--out", o.out, "the directory to create (it must not exist)")->required();
  app.add_option("--data-dir", o.data_dir, "directory holding the dataset's official files (default: its usual place)");
  app.add_option("--calibration", o.calibration, "training images that fit the codec and calibrate the int8 device half's activation ranges (0: all)")
      ->capture_default_str();
  app.add_option("--test-limit", o.test_limit, "test images measured (0: all)")->capture_default_str();
  app.add_option("--batch-size", o.batch, "images per engine batch while measuring")->capture_default_str();
  app.add_option("--device", device, "cpu, or cuda (the first GPU; needs a build with CUDA)")->capture_default_str();
  std::string target;
  app.add_option("--target", target, "c99: also write the int8 device half as C99 sources (device_c99/)")
      ->check(CLI::IsMember({"c99"}));
  CLI11_PARSE(app, argc, argv);
  o.c99 = target == "c99";
  try {
    std::string description;
    agilenn::Backend& backend = agilenn::open_backend(device, {}, &description);
    std::cout << "device: " << description << std::endl;
    agilenn::exporting::export_split(o, backend, std::cout);
  } catch (const std::exception& e) {
    std::cerr << "agilenn-export: error: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
