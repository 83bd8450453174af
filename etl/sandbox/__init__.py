"""A local Virtuous CRM+ sandbox: a real HTTP server that behaves like the documented API.

Separate from the rest of the tool on purpose: nothing else of `etl` imports it, and it imports
nothing of `etl` but `etl.base` (errors, serving) and the version. Only `etl.cli` (and the tests)
import it; import-linter checks both (docs/architecture.md). See docs/sandbox.md.

    from etl.sandbox.server import running_sandbox
    with running_sandbox(rate_limit="20/second") as sb:
        ...  # sb.base_url, sb.api_key, sb.readonly_key, sb.state, sb.run_batch()
"""
