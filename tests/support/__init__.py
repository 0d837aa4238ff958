"""Test support: the loopback OpenAI-compatible server with fault injection (serve), deterministic backends
(doubles), small pipeline runs (runs), and the real-backend end-to-end check (real_pipeline)."""
