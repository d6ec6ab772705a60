"""Schemathesis hooks for the gateway's fuzz test (test/fuzz.test.ts).

Random `model` strings name nothing, so every generation request would stop at a 404 before reaching a
worker. Half the generated bodies get a model that exists instead (the bare backbone or a shared adapter),
so the fuzzer's numbers, strings and shapes reach the engine too.
"""

from hypothesis import strategies as st

import schemathesis

MODELS = ["base", "alpha"]


@schemathesis.hook
def flatmap_body(context, body):
    if not (isinstance(body, dict) and isinstance(body.get("model"), str)):
        return st.just(body)
    return st.sampled_from([body["model"], *MODELS]).map(lambda model: {**body, "model": model})
