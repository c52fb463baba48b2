"""Reading and understanding traces; no agent code here.

Public entry points (import them from their modules; this package imports nothing eagerly):
- `profile.build_profile(tracking_uri, experiment_id, filter_string=None, since_ms=None, max_traces=None)`
  -> `profile_model.TraceProfile` (schema: docs/profile-schema.md)
- `source.resolve_experiment(tracking_uri, experiment)`, `source.parse_since(text)`, and the errors
  `TraceSourceError` (`ExperimentNotFound`, `InvalidQuery`, `TrackingUriError`, `TrackingServerError`;
  `user_error` says exit 2 or 1)
- `signatures.normalize_error_message(text)`
- `profile_summary.compact_profile(profile)`; `drilldown.stratified_sample(profile, size)`,
  `signature_examples`, `hidden_failure_examples`, `slowest_traces`
- `views` (search rows and capped span trees for the agent's trace tools)
"""
