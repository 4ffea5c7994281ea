"""Speaker clustering of L2-normalised embeddings: offline (whole meeting) and online (live).

Offline: one average-linkage tree (cosine distance), cut at every level up to `MAX_CUT`. At each
cut, clusters of at least `MIN_CLUSTER_WINDOWS` windows are speakers, and must all be told apart
by the separation test below, or the cut is refused; a two-window cluster (one short turn) is a
speaker too when it passes a stricter test; anything else is a stray window (a cough, a word in
overlap) that joins the nearest speaker. A cut that leaves more than `MAX_STRAY_SHARE` of the
windows as strays is refused. The accepted cut with the most speakers wins (at most
`MAX_AUTO_SPEAKERS`), so the count comes out by itself, and a split of one voice is never accepted.

The separation test is scale-free: the mean cosine similarity between two clusters' windows,
divided by the geometric mean of their own within-cluster similarities, must stay below
`SEPARATION`. Absolute similarities move a lot between rooms (a far-field AMI talker's 1.5 s
windows agree at 0.4-0.6 with one another, an espeak-ng voice's at 0.7), but this ratio does
not: two halves of one voice scored 0.66-0.93, two different voices 0.16-0.57 on AMI and up to
0.65 for the closest espeak-ng pair (en-us+f3 / en-us+f5). Silhouette, used before, picked the
count from the shape of the data alone and split one far-field talker into two to six speakers.
A min/max hint narrows the counts accepted. Online: each new embedding joins the nearest running
centroid when it is similar enough, or opens a new speaker.

Calibrated on the five AMI excerpts, a single-talker AMI stretch and ten espeak-ng meetings
(bench/RESULTS-diarization.md).
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

MAX_AUTO_SPEAKERS = 8
MAX_CUT = 16
"""Deepest tree cut looked at: enough for `MAX_AUTO_SPEAKERS` speakers plus stray windows."""
MIN_CLUSTER_WINDOWS = 3
"""A cluster this big (about 3 s of speech) is a speaker when it passes `SEPARATION`."""
SEPARATION = 0.65
"""Between/within similarity ratio at or above which two clusters are one voice."""
SMALL_SEPARATION = 0.5
"""A two-window cluster (one short turn) is a speaker only below this stricter ratio, else a stray."""
MAX_STRAY_SHARE = 0.25
"""A cut that leaves more than this share of windows outside its speakers is refused: deep in the
tree, one voice's windows fall into small tight sub-clusters that pass the test against each other."""
ONLINE_SIMILARITY = 0.5
"""Live: cosine similarity to a centroid needed to reuse that speaker."""


def cluster(embeddings: np.ndarray, min_speakers: int | None = None, max_speakers: int | None = None) -> np.ndarray:
    """Cluster ids (0..k-1, in order of first appearance) for each row of `embeddings`."""
    count = len(embeddings)
    if count < 2 or max_speakers == 1:
        return np.zeros(count, dtype=int)
    low, high = max(1, min_speakers or 1), min(max_speakers or MAX_AUTO_SPEAKERS, count)
    similarity = embeddings @ embeddings.T
    tree = linkage(embeddings, method="average", metric="cosine")
    best: tuple[np.ndarray, np.ndarray] | None = None
    for cut in range(1, min(count, max(MAX_CUT, low)) + 1):
        labels = fcluster(tree, t=cut, criterion="maxclust") - 1
        speakers = _speakers(similarity, labels)
        if speakers is None or not low <= len(speakers) <= high:
            continue
        if best is None or len(speakers) > len(best[1]):
            best = (labels, speakers)
    if best is None:  # a hint asked for more speakers than the windows can separate: cut as asked
        return _first_appearance_order(fcluster(tree, t=low, criterion="maxclust") - 1)
    return _first_appearance_order(_absorb_strays(embeddings, *best))


def _speakers(similarity: np.ndarray, labels: np.ndarray) -> np.ndarray | None:
    """Cluster ids of this cut that are speakers, or None when two big clusters look like one voice.

    Big clusters must all be told apart; a two-window cluster joins them only if it is told apart
    from each of them (and from the pairs kept before it) at the stricter `SMALL_SEPARATION`;
    everything else is a stray.
    """
    ids, sizes = np.unique(labels, return_counts=True)
    big = list(ids[sizes >= min(MIN_CLUSTER_WINDOWS, len(labels))])
    members = {int(k): np.flatnonzero(labels == k) for k in ids}
    for i, first in enumerate(big):
        for second in big[i + 1 :]:
            if _ratio(similarity, members[first], members[second]) >= SEPARATION:
                return None
    for pair in ids[sizes == 2]:
        if pair in big:
            continue
        if all(_ratio(similarity, members[pair], members[other]) < SMALL_SEPARATION for other in big):
            big.append(pair)
    if sum(len(members[int(k)]) for k in big) < (1 - MAX_STRAY_SHARE) * len(labels):
        return None
    return np.array(big)


def _ratio(similarity: np.ndarray, first: np.ndarray, second: np.ndarray) -> float:
    """Mean similarity between two clusters over the geometric mean of their own coherence."""
    return float(
        similarity[np.ix_(first, second)].mean()
        / np.sqrt(_coherence(similarity, first) * _coherence(similarity, second))
    )


def _coherence(similarity: np.ndarray, members: np.ndarray) -> float:
    size = len(members)
    if size < 2:
        return 1.0
    return max((float(similarity[np.ix_(members, members)].sum()) - size) / (size * (size - 1)), 1e-3)


def _absorb_strays(embeddings: np.ndarray, labels: np.ndarray, speakers: np.ndarray) -> np.ndarray:
    """Speaker index per window: members keep their cluster, strays join the nearest centroid."""
    members = labels[:, None] == speakers[None, :]
    centroids = members.T.astype(float) @ embeddings
    centroids /= np.maximum(np.linalg.norm(centroids, axis=1, keepdims=True), 1e-12)
    out = np.argmax(embeddings @ centroids.T, axis=1)
    inside = members.any(axis=1)
    out[inside] = np.argmax(members[inside], axis=1)
    return out


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
