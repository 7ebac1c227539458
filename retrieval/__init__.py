"""Search over the library's chunks: BM25, dense embeddings, and their fusion (fusion.py).

Per-document indexes live as plain files under `<home>/indexes/` (index_store.py); chunks
longer than the embedder reads are embedded in windows (windows.py), once per chunk content
(embedding_cache.py); `hybrid.Searcher` answers a query over one document, several, or the
whole library. Nothing here talks to an LLM, prints, or imports anything of ours but
`ingest/`; sentence_transformers (with torch) and faiss are imported only in dense.py,
onnxruntime only by onnx_embedder.py and onnx_export.py (which alone also uses torch, to
export a model once), all lazily, so importing this package stays cheap.
"""
