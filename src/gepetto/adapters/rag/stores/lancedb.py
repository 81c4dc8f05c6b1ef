"""LanceDB, embedded (``lancedb``, no server): in memory or in a folder.

::

    store = LanceDBStore()                    # in memory ("memory://")
    store = LanceDBStore(path="index/lance")  # on disk

One table with the columns ``id``, ``text``, ``metadata`` (a JSON string) and ``vector``;
writes are ``merge_insert`` on ``id`` (insert or replace), search is an exact cosine scan (no
ANN index: exact and fast enough for tens of thousands of passages); a hit's score is
``1 - distance``. Needs ``pip install 'gepetto[lancedb]'``.
"""

from __future__ import annotations

import json
from typing import Any

from gepetto.adapters.rag.embeddings import Embedder
from gepetto.adapters.rag.store import Document, Hit
from gepetto.adapters.rag.stores._embedded import EmbeddingStore, import_extra

__all__ = ["LanceDBStore"]

_COLUMNS = ["id", "text", "metadata"]
_HIT_COLUMNS = [*_COLUMNS, "_distance"]


class LanceDBStore(EmbeddingStore):
    """A LanceDB table.

    Args:
        path: a folder (or any LanceDB URI); ``None``: in memory.
        table: the table's name.
        embedder: texts to vectors (default: the offline hashing embedder).

    Raises:
        ConfigError: lancedb is not installed (names the extra).
    """

    def __init__(
        self,
        path: str | None = None,
        *,
        table: str = "gepetto",
        embedder: Embedder | None = None,
    ) -> None:
        super().__init__(embedder)
        lancedb = import_extra("lancedb", "lancedb", "LanceDBStore")
        self._pa = import_extra("pyarrow", "lancedb", "LanceDBStore")
        self.path = path
        self.table_name = table
        self._db = lancedb.connect("memory://" if path is None else str(path))
        self._table: Any = None
        try:
            self._table = self._db.open_table(table)
        except ValueError:  # "Table ... was not found": created at the first add
            self._table = None

    def __repr__(self) -> str:
        where = self.path or "memory://"
        return f"LanceDBStore({where!r}, table={self.table_name!r}, embedder={self.embedder!r})"

    def _upsert(self, documents: list[Document], matrix: Any) -> None:
        pa = self._pa
        dimension = int(matrix.shape[1])
        data = pa.table(
            {
                "id": [d.id for d in documents],
                "text": [d.text for d in documents],
                "metadata": [json.dumps(d.metadata) for d in documents],
                "vector": pa.FixedSizeListArray.from_arrays(
                    pa.array(matrix.astype("float32").ravel(), type=pa.float32()), dimension
                ),
            }
        )
        if self._table is None:
            self._table = self._db.create_table(self.table_name, data=data)
            return
        (
            self._table.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(data)
        )

    def _search(self, vector: Any, k: int) -> list[Hit]:
        rows = (
            self._table.search(vector.astype("float32"))
            .distance_type("cosine")
            .select(_HIT_COLUMNS)
            .limit(k)
            .to_list()
        )
        return [
            Hit(r["id"], 1.0 - float(r["_distance"]), r["text"], json.loads(r["metadata"]))
            for r in rows
        ]

    def _get(self, ids: list[str]) -> list[Document]:
        if self._table is None:
            return []
        quoted = ", ".join("'" + i.replace("'", "''") + "'" for i in ids)
        rows = (
            self._table.search().where(f"id IN ({quoted})").select(_COLUMNS).limit(len(ids))
        ).to_list()
        return [Document(r["id"], r["text"], json.loads(r["metadata"])) for r in rows]

    def _count(self) -> int:
        return 0 if self._table is None else int(self._table.count_rows())
