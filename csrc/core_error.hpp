// CoreError: the one exception type for bad input that the core refuses. Its parts are fields,
// so that the bindings hand them to Python as the attributes of `_core.CoreError` and no one
// parses a message (csrc/bindings/errors.cpp; inspector/_native.py maps it to the project's
// error classes in one function).
//
//   kind     what went wrong, one name per error class of inspector/errors.py: "header",
//            "offset", "dtype", "shape", "duplicate_key", "truncated", "io", or "value" (the
//            caller's own class: a bad view, an unsupported cast, ...)
//   problem  the sentence, without a prefix
//   where    which argument it concerns ("a", "src", "destination", ...), or empty
//   key      the name in the input it concerns (a tensor of a header), when there is one
//   job      the index of the job of a batch call (hash_tensors), when there is one
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace inspector {

class CoreError : public std::invalid_argument {
public:
    explicit CoreError(std::string problem, std::string kind = "value", std::string where = {},
                       std::optional<std::string> key = std::nullopt,
                       std::optional<std::size_t> job = std::nullopt)
        : std::invalid_argument(message(problem, where, job)),
          problem_(std::move(problem)),
          kind_(std::move(kind)),
          where_(std::move(where)),
          key_(std::move(key)),
          job_(job) {}

    // The same error, as one job of a batch (where is replaced by the job's index).
    CoreError for_job(std::size_t job) const { return CoreError(problem_, kind_, {}, key_, job); }

    const std::string& problem() const noexcept { return problem_; }
    const std::string& kind() const noexcept { return kind_; }
    const std::string& where() const noexcept { return where_; }
    const std::optional<std::string>& key() const noexcept { return key_; }
    std::optional<std::size_t> job() const noexcept { return job_; }

private:
    static std::string message(const std::string& problem, const std::string& where,
                               std::optional<std::size_t> job) {
        if (job) return "job " + std::to_string(*job) + ": " + problem;
        return where.empty() ? problem : where + ": " + problem;
    }

    std::string problem_;
    std::string kind_;
    std::string where_;
    std::optional<std::string> key_;
    std::optional<std::size_t> job_;
};

}  // namespace inspector
