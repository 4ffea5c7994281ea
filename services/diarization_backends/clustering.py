"""Speaker clustering of L2-normalised embeddings: offline (whole meeting) and online (live).

Offline: one average-linkage tree (cosine distance), cut at every count from 2 to `MAX_AUTO_SPEAKERS`;
the cut with the best silhouette wins, so the number of speakers comes out by itself. One speaker
is chosen instead when even that cut is poor (low silhouette) or leaves two clusters whose centroids
are as alike as one voice with itself. A min/max hint narrows the counts tried. Online: each new
embedding joins the nearest running centroid when it is similar enough, or opens a new speaker.

Thresholds are for CAM++ embeddings, tuned on the espeak-ng conversations and the AMI dev
excerpts (bench/RESULTS-diarization.md).
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from sklearn.metrics import silhouette_score

MAX_AUTO_SPEAKERS = 8
MIN_SILHOUETTE = 0.25
"""Below this the best multi-speaker cut is no real structure: one speaker."""
SAME_SPEAKER_SIMILARITY = 0.7
"""Two centroids at least this cosine-similar are one voice."""
ONLINE_SIMILARITY = 0.5
"""Live: cosine similarity to a centroid needed to reuse that speaker."""


def cluster(embeddings: np.ndarray, min_speakers: int | None = None, max_speakers: int | None = None) -> np.ndarray:
    """Cluster ids (0..k-1, in order of first appearance) for each row of `embeddings`."""
    count = len(embeddings)
    if count < 3 or max_speakers == 1:
        return np.zeros(count, dtype=int)
    low = max(2, min_speakers or 1)
    high = min(max_speakers or MAX_AUTO_SPEAKERS, count - 1)
    if low > high:
        low = high
    tree = linkage(embeddings, method="average", metric="cosine")
    best: tuple[float, np.ndarray] | None = None
    for k in range(low, high + 1):
        labels = fcluster(tree, t=k, criterion="maxclust") - 1
        if len(np.unique(labels)) < 2:
            continue
        score = float(silhouette_score(embeddings, labels, metric="cosine"))
        if best is None or score > best[0]:
            best = (score, labels)
    if best is None:
        return np.zeros(count, dtype=int)
    score, labels = best
    single = score < MIN_SILHOUETTE or _max_centroid_similarity(embeddings, labels) >= SAME_SPEAKER_SIMILARITY
    if single and (min_speakers or 1) <= 1:
        return np.zeros(count, dtype=int)
    return _first_appearance_order(labels)


def _max_centroid_similarity(embeddings: np.ndarray, labels: np.ndarray) -> float:
    centroids = np.stack([_unit(embeddings[labels == k].mean(axis=0)) for k in np.unique(labels)])
    similarity = centroids @ centroids.T
    np.fill_diagonal(similarity, -1.0)
    return float(similarity.max())


def _first_appearance_order(labels: np.ndarray) -> np.ndarray:
    mapping: dict[int, int] = {}
    for label in labels:
        mapping.setdefault(int(label), len(mapping))
    return np.array([mapping[int(label)] for label in labels], dtype=int)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


class OnlineClusters:
    """Incremental speaker clustering for one live session (not thread-safe: one caller at a time)."""

    def __init__(self, similarity: float = ONLINE_SIMILARITY, max_speakers: int | None = None) -> None:
        self.similarity = similarity
        self.max_speakers = max_speakers
        self._sums: list[np.ndarray] = []

    @property
    def count(self) -> int:
        """Speakers opened so far."""
        return len(self._sums)

    def assign(self, embedding: np.ndarray, weight: float = 1.0) -> int:
        """Index (0-based, stable for the session) of the speaker this embedding belongs to."""
        if self._sums:
            centroids = np.stack([_unit(total) for total in self._sums])
            scores = centroids @ embedding
            best = int(np.argmax(scores))
            full = self.max_speakers is not None and len(self._sums) >= self.max_speakers
            if scores[best] >= self.similarity or full:
                self._sums[best] = self._sums[best] + weight * embedding
                return best
        self._sums.append(weight * np.asarray(embedding, dtype=np.float64))
        return len(self._sums) - 1
