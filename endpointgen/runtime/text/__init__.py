"""Text generation, whichever library runs the model.

`interface`: what a text engine is asked and offers (`TextEngine`), and what the engines
share. `transformers`: the engines on transformers, with `batcher`, their continuous
batching. `vllm`: vLLM's engine behind the same interface.
"""
