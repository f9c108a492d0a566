"""Build the bundled dataset ``recbole_recgoat/bundled/lastfm-2k`` from the published files.

Source: Last.fm-2K (HetRec 2011) in MMRec format with published multimodal features, from
``giuspillo/extending_sota_data_mm_feat`` (see ``../shared/data/lastfm-2k-mm/SOURCE.md``).

    python scripts/make_bundled_lastfm.py /path/to/lastfm-2k-mm

Writes, through the package's MMRec converter (so the published x_label split is kept row for
row): ``lastfm-2k.{train,valid,test}.inter``; the published features ``text_feat.npy``
(all-MiniLM-L6-v2 of the artist tags, 384-d), ``audio_feat.npy`` (VGGish, 128-d) and
``whisper_feat.npy`` (Whisper encoder, 512-d), row = itemID; ``lastfm-2k.item`` (itemID ->
HetRec artist id, artist name, tag text) and ``lastfm-2k.user`` (userID -> HetRec user id).
Re-running it is a no-op.
"""

import os
import sys

import pandas as pd

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from recbole_recgoat.data.converters import convert_mmrec, write_files  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "recbole_recgoat", "bundled", "lastfm-2k")


def main(src):
    convert_mmrec(
        os.path.join(src, "lfm2k.inter"),
        OUT,
        "lastfm-2k",
        feature_files={
            "text_feat.npy": os.path.join(src, "all-MiniLM-L6-v2.npy"),
            "audio_feat.npy": os.path.join(src, "vggish.npy"),
            "whisper_feat.npy": os.path.join(src, "whisper.npy"),
        },
    )
    ids = pd.read_csv(os.path.join(src, "lfm2k.inter"), sep="\t", dtype=str)
    og = pd.read_csv(os.path.join(src, "lfm2k_og_ids.inter"), sep="\t", dtype=str)
    assert len(ids) == len(og)
    item_map = pd.DataFrame({"item": ids.itemID, "artist": og.itemID}).drop_duplicates()
    user_map = pd.DataFrame({"user": ids.userID, "hetrec": og.userID}).drop_duplicates()
    assert item_map.item.is_unique and item_map.artist.is_unique
    assert user_map.user.is_unique and user_map.hetrec.is_unique
    item_map = item_map.assign(item_int=item_map.item.astype(int)).sort_values("item_int")
    user_map = user_map.assign(user_int=user_map.user.astype(int)).sort_values("user_int")

    text = pd.read_csv(os.path.join(src, "lfm2k_text.tsv"), sep="\t", dtype=str, keep_default_na=False)
    artists = pd.read_csv(os.path.join(src, "artists.dat"), sep="\t", dtype=str, keep_default_na=False, encoding="utf-8")
    tags = dict(zip(text.artistID, text.text))
    names = dict(zip(artists["id"], artists["name"]))
    clean = lambda s: " ".join(str(s).replace("\t", " ").split())  # noqa: E731
    item_lines = ["item_id:token\tartist_id:token\tname:token_seq\ttags:token_seq"]
    for item, artist in zip(item_map.item, item_map.artist):
        item_lines.append(f"{item}\t{artist}\t{clean(names[artist])}\t{clean(tags[artist])}")
    user_lines = ["user_id:token\thetrec_user_id:token"] + [f"{u}\t{h}" for u, h in zip(user_map.user, user_map.hetrec)]
    write_files({
        os.path.join(OUT, "lastfm-2k.item"): ("\n".join(item_lines) + "\n").encode("utf-8"),
        os.path.join(OUT, "lastfm-2k.user"): ("\n".join(user_lines) + "\n").encode("utf-8"),
    })
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "lastfm-2k-mm"))
