"""TTHeader Streaming ("ttstream"): asyncio client and server (KITEX-WIRE-2.md §11)."""
