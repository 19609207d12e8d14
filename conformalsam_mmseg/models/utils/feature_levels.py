def levels_read_by(head, num_levels):
    """Sorted indices of the backbone outputs a decode head reads, among ``num_levels``.

    ``in_index`` (an int or a list) names the main input; a DeepLabV3+ head also reads the
    low-level feature c1: ``c1_in_index`` where the head has it (``UniMatchDeepLabV3PlusHead``),
    else index 0 for MMSegmentation's ``DepthwiseSeparableASPPHead`` with a c1 branch, which
    reads ``inputs[0]``. Negative indices count from the end, as Python's.
    """
    in_index = head.in_index
    levels = list(in_index) if isinstance(in_index, (list, tuple)) else [in_index]
    if hasattr(head, 'c1_in_index'):
        levels.append(head.c1_in_index)
    elif getattr(head, 'c1_bottleneck', None) is not None:
        levels.append(0)
    for level in levels:
        if not -num_levels <= level < num_levels:
            raise ValueError(
                f'{type(head).__name__} reads feature level {level}, but the backbone gives '
                f'{num_levels} levels; check the head\'s in_index / c1_in_index against the '
                "backbone's out_indices.")
    return sorted({level % num_levels for level in levels})
