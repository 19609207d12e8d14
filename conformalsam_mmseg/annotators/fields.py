"""The names under which an annotator's cached output travels from the data pipeline to the
pseudo-label head, declared once."""
INDEX_KEY = 'annotator_topk_index'  # (k, H, W) uint8 class indices, most probable first
PROB_KEY = 'annotator_topk_prob'    # (k, H, W) uint8 probabilities, p = v / 255
MAP_KEY = 'annotator_topk_map'      # the (H, W, 2k) seg field between loading and packing
TOPK_KEY = 'annotator_topk'         # k, a metainfo key of the packed sample
