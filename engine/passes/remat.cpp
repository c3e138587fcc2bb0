// Rematerialisation: recompute cheap elementwise values next to their late readers instead
// of keeping them in the arena across the step's memory peak.
//
// Greedy, one value a round. Find the step where the most bytes are live. Among the values
// that wait there (made before it, read after it, not read at it) and come from a cheap
// elementwise op (arithmetic, clamps, selections; not exp or sigmoid), weigh how each would
// be had at its next reader: its inputs read from a value live there anyway, from one kept
// until then, or recomputed themselves, whichever adds the fewest bytes at the peak.
// Shortlist the values that free the most bytes at the peak, compute exactly what each
// would leave at every step (values kept longer, the recomputed chain at its reader), and
// free the one that leaves the lowest peak, of equal peaks the fewest bytes live over the
// whole step. The readers from its next one on read the recomputed value. Stop under the
// budget, or when rounds stop paying (see rematerialise()).
#include <algorithm>
#include <optional>
#include <unordered_map>

#include "engine/core/error.h"
#include "engine/ir/registry.h"
#include "engine/passes/passes.h"

namespace agilenn {
namespace {

constexpr int kMaxDepth = 8;  // enough for a batch norm's affine chain and its activation
constexpr size_t kShortlist = 16;  // candidates a round weighs exactly

bool recomputable(const Node& n) { return n.op->elementwise && !n.op->transcendental; }

// How one value is had at the reader's step: read an existing value (kept until then), or
// recompute it from its inputs (each chosen the same way); `cost` is the bytes that adds to
// the live peak.
struct Choice {
  NodeId existing = kNoNode;  // kNoNode: recompute
  size_t cost = 0;
};

class Rematerialiser {
 public:
  Rematerialiser(Graph& graph, Plan& plan) : graph_(graph), plan_(plan) {
    is_output_.assign(graph.size(), false);
    for (NodeId o : plan.outputs) is_output_[static_cast<size_t>(o)] = true;
    origin_.resize(graph.size());
    for (size_t id = 0; id < graph.size(); ++id) origin_[id] = static_cast<NodeId>(id);
    for (NodeId id : plan.order) versions_[id] = {id};
    analyse();
  }

  size_t peak_bytes() const { return peak_bytes_; }
  size_t added() const { return added_; }

  // Frees the waiting value whose recomputation leaves the lowest peak (of equal peaks, the
  // fewest bytes live over all steps); false when none lowers either.
  bool free_one() {
    const size_t peak = peak_step_;
    std::vector<size_t> next_read(graph_.size(), kNever);
    for (size_t s = plan_.order.size(); s-- > peak + 1;)
      for (NodeId in : plan_.reads[s]) next_read[static_cast<size_t>(in)] = s;
    std::vector<size_t> last_read(graph_.size(), 0);  // up to the peak
    for (size_t s = 0; s <= peak; ++s)
      for (NodeId in : plan_.reads[s]) last_read[static_cast<size_t>(in)] = s;

    // Candidates by the bytes they free at the peak step, then by how long they wait: the
    // steps around a peak tend to be as full as it, and a value made and read nearby lowers
    // only a few of them, while a forward value waiting for the backward lowers them all.
    struct Candidate {
      NodeId value;
      Choice choice;
      size_t gain, wait, kept_until, site;
    };
    std::vector<Candidate> candidates;
    memo_.clear();
    for (size_t s = 0; s < peak; ++s) {
      const NodeId v = plan_.order[s];
      const auto vi = static_cast<size_t>(v);
      if (!counted(v) || !recomputable(graph_.node(v)) || last_read[vi] == peak || last_[vi] <= peak) continue;
      const size_t site = next_read[vi], kept_until = std::max(s, last_read[vi]);
      const Choice c = choose(v, v, site, peak, 0);
      const size_t bytes = arena_bytes(graph_.node(v));
      if (c.cost < bytes) candidates.push_back({v, c, bytes - c.cost, site - kept_until, kept_until, site});
    }
    const size_t shortlist = std::min<size_t>(candidates.size(), kShortlist);
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(shortlist),
                      candidates.end(), [](const Candidate& a, const Candidate& b) {
                        return a.gain != b.gain ? a.gain > b.gain : a.wait > b.wait;
                      });
    // Exactly: what each of the shortlist would leave, everywhere.
    const Candidate* best = nullptr;
    Effect best_effect{peak_bytes_, 0};
    for (size_t i = 0; i < shortlist; ++i) {
      const Candidate& c = candidates[i];
      const Effect e = effect(c.value, c.choice, c.kept_until, c.site);
      if (e.peak < best_effect.peak || (e.peak == best_effect.peak && e.area < best_effect.area)) {
        best_effect = e;
        best = &c;
      }
    }
    if (!best) return false;
    size_t at = best->site;
    const NodeId value = best->choice.existing != kNoNode ? best->choice.existing : build(best->value, best->site, at);
    for (size_t s = at; s < plan_.order.size(); ++s)
      for (NodeId& in : plan_.reads[s])
        if (in == best->value) in = value;
    analyse();
    return true;
  }

  // Where the bytes live peak in the plan as it stands.
  void analyse() {
    const size_t n = plan_.order.size();
    pos_.assign(graph_.size(), kNever);
    last_.assign(graph_.size(), 0);
    for (size_t s = 0; s < n; ++s) {
      pos_[static_cast<size_t>(plan_.order[s])] = s;
      last_[static_cast<size_t>(plan_.order[s])] = s;
    }
    for (size_t s = 0; s < n; ++s)
      for (NodeId in : plan_.reads[s]) last_[static_cast<size_t>(in)] = std::max(last_[static_cast<size_t>(in)], s);
    std::vector<int64_t> change(n + 1, 0);
    for (NodeId id : plan_.order) {
      if (!counted(id)) continue;
      const auto b = static_cast<int64_t>(arena_bytes(graph_.node(id)));
      change[pos_[static_cast<size_t>(id)]] += b;
      change[last_[static_cast<size_t>(id)] + 1] -= b;
    }
    live_.assign(n, 0);
    int64_t live = 0;
    peak_bytes_ = 0;
    for (size_t s = 0; s < n; ++s) {
      live_[s] = live += change[s];
      if (static_cast<size_t>(live) > peak_bytes_) {
        peak_bytes_ = static_cast<size_t>(live);
        peak_step_ = s;
      }
    }
    added_ = n - original_steps_;
  }

 private:
  static constexpr size_t kNever = SIZE_MAX;
  Graph& graph_;
  Plan& plan_;
  std::vector<bool> is_output_;
  std::vector<NodeId> origin_;                                  // a copy's original
  std::unordered_map<NodeId, std::vector<NodeId>> versions_;    // original -> it and its copies
  std::vector<size_t> pos_, last_;                              // per node: its step, its last reader's
  std::vector<int64_t> live_;                                   // per step: the bytes live
  const size_t original_steps_ = plan_.order.size();
  size_t peak_step_ = 0, peak_bytes_ = 0, added_ = 0;
  // This round's choices by (value, reader's step): a value is reached from many waiting
  // values' recomputations, and only the one being freed is chosen differently.
  std::unordered_map<uint64_t, Choice> memo_;

  // In the arena: computed and not handed out.
  bool counted(NodeId id) const {
    return graph_.node(id).op_name() != "leaf" && !is_output_[static_cast<size_t>(id)];
  }

  static uint64_t key(NodeId w, size_t site) { return (static_cast<uint64_t>(w) << 32) | site; }

  // Value `w` at step `site`, while `freed` (which it may not use) is freed across `peak`.
  Choice choose(NodeId w, NodeId freed, size_t site, size_t peak, int depth) {
    if (w != freed)
      if (auto it = memo_.find(key(w, site)); it != memo_.end()) return it->second;
    Choice c = choose_uncached(w, freed, site, peak, depth);
    if (w != freed) memo_[key(w, site)] = c;
    return c;
  }

  Choice choose_uncached(NodeId w, NodeId freed, size_t site, size_t peak, int depth) {
    std::optional<NodeId> kept_past_peak;
    for (NodeId u : versions_.at(origin_[static_cast<size_t>(w)])) {
      const auto ui = static_cast<size_t>(u);
      if (u == freed || pos_[ui] >= site) continue;
      if (!counted(u) || last_[ui] >= site) return {u, 0};                    // there anyway
      if (last_[ui] >= peak || pos_[ui] > peak) kept_past_peak = u;            // kept longer, not across it
    }
    if (kept_past_peak) return {*kept_past_peak, 0};
    Choice keep{w, arena_bytes(graph_.node(w))};
    if (w == freed) keep.cost = kNever;
    if (depth < kMaxDepth && recomputable(graph_.node(w))) {
      Choice again{kNoNode, 0};
      for (NodeId in : plan_.reads[pos_[static_cast<size_t>(w)]]) {
        const size_t c = choose(in, freed, site, peak, depth + 1).cost;
        again.cost = c == kNever || again.cost + c >= kNever ? kNever : again.cost + c;
      }
      if (again.cost < keep.cost) return again;
    }
    return keep;
  }

  struct Effect {
    size_t peak;   // the most bytes live at one step
    int64_t area;  // the change in bytes live, summed over the steps
  };

  // The live curve if `v`, kept until `kept_until`, were had at `site` as `top` says.
  // Recomputed values count at the reader's step only (they run in place there).
  Effect effect(NodeId v, const Choice& top, size_t kept_until, size_t site) {
    const size_t n = plan_.order.size();
    std::vector<int64_t> change(n + 1, 0);
    auto add = [&](size_t from, size_t to, int64_t bytes) {  // [from, to]
      if (from > to) return;
      change[from] += bytes;
      change[std::min(to, n - 1) + 1] -= bytes;
    };
    const auto vi = static_cast<size_t>(v);
    const auto v_bytes = static_cast<int64_t>(arena_bytes(graph_.node(v)));
    std::vector<NodeId> kept;
    if (top.existing != kNoNode) {
      // Another copy takes the reads from the site on: it lives until v's last reader.
      add(kept_until + 1, last_[vi], -v_bytes);
      const auto ui = static_cast<size_t>(top.existing);
      if (counted(top.existing) && last_[ui] < last_[vi])
        add(last_[ui] + 1, last_[vi], static_cast<int64_t>(arena_bytes(graph_.node(top.existing))));
    } else {
      add(kept_until + 1, site - 1, -v_bytes);  // from the site on, its copy stands in
      int64_t transient = 0;
      for (NodeId in : plan_.reads[pos_[vi]]) walk(in, site, kept, transient);
      add(site, site, transient);
    }
    std::sort(kept.begin(), kept.end());
    kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
    for (NodeId u : kept)
      add(last_[static_cast<size_t>(u)] + 1, site, static_cast<int64_t>(arena_bytes(graph_.node(u))));
    Effect e{0, 0};
    int64_t delta = 0;
    for (size_t s = 0; s < n; ++s) {
      delta += change[s];
      e.area += delta;
      e.peak = std::max(e.peak, static_cast<size_t>(live_[s] + delta));
    }
    return e;
  }

  // The values the chosen way of having `w` at `site` keeps longer, and the bytes it
  // recomputes there.
  void walk(NodeId w, size_t site, std::vector<NodeId>& kept, int64_t& transient) const {
    const Choice& c = memo_.at(key(w, site));
    if (c.existing != kNoNode) {
      if (counted(c.existing) && last_[static_cast<size_t>(c.existing)] < site) kept.push_back(c.existing);
      return;
    }
    transient += static_cast<int64_t>(arena_bytes(graph_.node(w)));
    for (NodeId in : plan_.reads[pos_[static_cast<size_t>(w)]]) walk(in, site, kept, transient);
  }

  // Inserts the recomputation of `w` for the reader at step `site` (inputs first, as this
  // round chose them) at step `at`, which moves on past it; returns the new value.
  NodeId build(NodeId w, size_t site, size_t& at) {
    std::vector<NodeId> inputs;
    for (NodeId in : plan_.reads[pos_[static_cast<size_t>(w)]]) {
      const Choice c = memo_.at(key(in, site));
      inputs.push_back(c.existing != kNoNode ? c.existing : build(in, site, at));
    }
    const Node& original = graph_.node(w);
    const std::string op = original.op_name();
    const Attrs attrs = original.attrs;
    const NodeId copy = graph_.add(op, inputs, attrs);
    AGILENN_CHECK(static_cast<size_t>(copy) == origin_.size(), "rematerialise: the graph grew under the pass");
    AGILENN_CHECK(graph_.node(copy).shape == graph_.node(w).shape,
                  "rematerialise: the copy of " << graph_.describe(w) << " has another shape");
    is_output_.push_back(false);
    origin_.push_back(origin_[static_cast<size_t>(w)]);
    versions_[origin_.back()].push_back(copy);
    plan_.order.insert(plan_.order.begin() + static_cast<std::ptrdiff_t>(at), copy);
    plan_.reads.insert(plan_.reads.begin() + static_cast<std::ptrdiff_t>(at), inputs);
    ++at;
    return copy;
  }
};

}  // namespace

size_t rematerialise(Graph& graph, Plan& plan, size_t budget) {
  Rematerialiser r(graph, plan);
  // The peak goes down quickly, then by ever smaller steps for ever more recomputation
  // (paper preset, batch 8: 372 to 222 MiB for 328 nodes, 143 MiB at 1,060, 142.0 MiB at
  // 1,557). Keep the lowest plan seen that beat the one before by a 1/1024 of the peak we
  // started from; give up after a run of rounds without one.
  constexpr int kPatience = 32;
  const size_t worth = std::max<size_t>(1, r.peak_bytes() / 1024);
  size_t best_peak = r.peak_bytes(), best_added = 0;
  std::vector<NodeId> best_order = plan.order;
  std::vector<std::vector<NodeId>> best_reads = plan.reads;
  for (int stale = 0; best_peak > budget && stale < kPatience && r.free_one();) {
    if (r.peak_bytes() + worth > best_peak && r.peak_bytes() > budget) {
      ++stale;
      continue;
    }
    stale = 0;
    best_peak = r.peak_bytes();
    best_added = r.added();
    best_order = plan.order;
    best_reads = plan.reads;
  }
  plan.order = std::move(best_order);
  plan.reads = std::move(best_reads);
  // Copies the kept plan does not run stay in the graph, unread.
  for (size_t id = plan.canonical.size(); id < graph.size(); ++id) plan.canonical.push_back(static_cast<NodeId>(id));
  return best_added;
}

}  // namespace agilenn
