#include "common/op.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace frcnn {

namespace {

std::string strip(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

[[noreturn]] void bad(const AttrSpec& a, const std::string& what, const std::string& got) {
  throw InputError(std::string("attribute ") + a.name + " must be " + what + ", got '" + got +
                   "'");
}

double parse_number(const AttrSpec& a, const std::string& text, const char* what) {
  const std::string s = strip(text);
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno == ERANGE) bad(a, what, text);
  return x;
}

long parse_integer(const AttrSpec& a, const std::string& text, const char* what) {
  std::string s = strip(text);
  if (!s.empty() && s.back() == 'L') s.pop_back();  // Python 2 long suffix
  errno = 0;
  char* end = nullptr;
  const long x = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno == ERANGE || x < INT32_MIN || x > INT32_MAX)
    bad(a, what, text);
  return x;
}

// "(1, 2)", "[1,2]", "1" -> the comma/space separated items.
std::vector<std::string> items(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == '(' || c == ')' || c == '[' || c == ']' || c == ',' ||
        std::isspace(static_cast<unsigned char>(c))) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

void check_range(const AttrSpec& a, double v) {
  if (a.lo <= -1e308 && a.hi >= 1e308) return;  // no range: any value, NaN included
  if (v >= a.lo && v <= a.hi) return;
  std::string range;
  if (a.hi >= 1e308)
    range = ">= " + fmt(a.lo);
  else if (a.lo <= -1e308)
    range = "<= " + fmt(a.hi);
  else
    range = "in [" + fmt(a.lo) + ", " + fmt(a.hi) + "]";
  throw InputError(std::string(a.name) + " must be " + range + ", got " + fmt(v));
}

}  // namespace

const AttrValues::Value& AttrValues::at(const char* name) const {
  for (size_t k = 0; k < values_.size(); ++k)
    if (std::strcmp(op_->attrs[k].name, name) == 0) return values_[k];
  throw Error(std::string("attribute ") + name + " is not in the schema");
}

AttrValues parse_attrs(const OpDef& op,
                       const std::unordered_map<std::string, std::string>& raw) {
  for (const auto& kv : raw) {
    if (kv.first.rfind("__", 0) == 0) continue;  // MXNet's own (__profiler_scope__, ...)
    const bool known = std::any_of(op.attrs.begin(), op.attrs.end(),
                                   [&](const AttrSpec& a) { return kv.first == a.name; });
    if (!known) {
      std::string names;
      for (const auto& a : op.attrs) names += (names.empty() ? "" : ", ") + std::string(a.name);
      throw InputError("unknown attribute '" + kv.first + "' (known: " + names + ")");
    }
  }
  AttrValues out;
  out.op_ = &op;
  out.values_.resize(op.attrs.size());
  for (size_t k = 0; k < op.attrs.size(); ++k) {
    const AttrSpec& a = op.attrs[k];
    auto it = raw.empty() ? raw.end() : raw.find(a.name);
    if (it == raw.end() && a.def == nullptr)
      throw InputError(std::string("attribute ") + a.name + " is required");
    if (it == raw.end() && a.def[0] == '\0') continue;  // optional without a default
    const std::string text = it == raw.end() ? std::string(a.def) : it->second;  // short: SSO
    AttrValues::Value& v = out.values_[k];
    v.set = true;
    switch (a.type) {
      case AttrType::kFloat:
      case AttrType::kDouble:
        v.num = parse_number(a, text, "a number");
        if (a.type == AttrType::kFloat) v.num = static_cast<float>(v.num);
        check_range(a, v.num);
        break;
      case AttrType::kInt:
        v.num = static_cast<double>(parse_integer(a, text, "an integer"));
        check_range(a, v.num);
        break;
      case AttrType::kBool: {
        std::string s = strip(text);
        std::transform(s.begin(), s.end(), s.begin(),
                       [](unsigned char c) { return std::tolower(c); });
        if (s == "true" || s == "1")
          v.num = 1;
        else if (s == "false" || s == "0")
          v.num = 0;
        else
          bad(a, "a boolean", text);
        break;
      }
      case AttrType::kChoice: {
        std::string s = strip(text);
        if (s.size() >= 2 && (s.front() == '\'' || s.front() == '"') && s.back() == s.front())
          s = s.substr(1, s.size() - 2);
        require_ok(check_choice(a.name, s, a.choices));
        v.text = std::move(s);
        break;
      }
      case AttrType::kIntPair: {
        for (const auto& item : items(text))
          v.list.push_back(static_cast<double>(parse_integer(a, item, "integers")));
        if (v.list.size() == 1) v.list.push_back(v.list[0]);
        if (v.list.size() != 2) bad(a, "an integer or 2 integers", text);
        break;
      }
      case AttrType::kIntList: {
        for (const auto& item : items(text))
          v.list.push_back(static_cast<double>(parse_integer(a, item, "integers")));
        if (v.list.empty()) bad(a, "at least one integer", text);
        break;
      }
      case AttrType::kFloatList: {
        for (const auto& item : items(text))
          v.list.push_back(static_cast<float>(parse_number(a, item, "numbers")));
        if (v.list.empty()) bad(a, "at least one number", text);
        break;
      }
    }
  }
  return out;
}

std::vector<std::string> input_names(const OpDef& op, size_t n) {
  std::vector<std::string> names;
  for (size_t i = 0; i < n; ++i) {
    const InputSpec& s = input_spec(op, i);
    if (s.name[0] != '*') {
      names.emplace_back(s.name);
    } else {  // "*a,b,...": the variadic inputs in equal groups a[0..k), b[0..k), ...
      std::vector<std::string> groups(1);
      for (const char* ch = s.name + 1; *ch; ++ch) {
        if (*ch == ',') groups.emplace_back();
        else groups.back() += *ch;
      }
      const size_t first = op.inputs.size() - 1, j = i - first;
      const size_t per = std::max<size_t>(1, (n - first + groups.size() - 1) / groups.size());
      const size_t g = std::min(j / per, groups.size() - 1);
      names.push_back(groups[g] + "[" + std::to_string(j - g * per) + "]");
    }
  }
  return names;
}

const InputSpec& input_spec(const OpDef& op, size_t i) {
  return op.inputs[std::min(i, op.inputs.size() - 1)];
}

const OpDef& find_op(const std::string& name) {
  std::string names;
  for (const OpDef* op : all_ops()) {
    if (name == op->name) return *op;
    names += (names.empty() ? "" : ", ") + std::string(op->name);
  }
  throw InputError("no op named '" + name + "' (known: " + names + ")");
}

size_t op_workspace(const OpDef& op, const AttrValues& a, DType dt, const std::vector<Shape>& in,
                    bool backward) {
  return op.workspace ? op.workspace(a, dt, in, backward) : 0;
}

[[noreturn]] void no_cuda() { throw InputError("this build of frcnn_ops has no CUDA kernels"); }

void require_ok(const std::string& msg) {
  if (!msg.empty()) throw InputError(msg);
}

}  // namespace frcnn
