"""Checks on retrieval: a RETRIEVER span that returned nothing leaves the model guessing."""

from ._registry import check
from ._trace import documents_of, spans_of, type_of


def _has_retriever(params, facts):
    if not facts.has_span_type("RETRIEVER"):
        return "the dataset's traces have no RETRIEVER spans"
    name = params.get("span_name")
    if name and name not in facts.span_names:
        return f"no span named {name!r} in the dataset's traces (span names: {facts.known(facts.span_names)})"
    return None


@check(reads=("trace",), requires=_has_retriever)
def retrieval_non_empty(span_name: str | None = None, min_documents: int = 1):
    """Fails when a retrieval step returned no documents (or fewer than `min_documents`).

    Args:
        span_name: Only check RETRIEVER spans with this name; every RETRIEVER span when omitted.
        min_documents: Fewest documents each retrieval must return.
    """

    def run(trace, outputs):
        spans = [s for s in spans_of(trace) if type_of(s) == "RETRIEVER" and (span_name is None or s.name == span_name)]
        if not spans:
            return True, "no retrieval in this trace"
        counts = [len(documents_of(s)) for s in spans]
        if min(counts) < min_documents:
            return False, f"{spans[counts.index(min(counts))].name} returned {min(counts)} document(s), fewer than {min_documents}"
        return True, f"{len(spans)} retrieval(s), fewest documents {min(counts)}"

    return run
