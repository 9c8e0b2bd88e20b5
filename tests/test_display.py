from reprank.teaching import display


def test_harmful_excerpt_is_marked_and_cut_to_its_first_words():
    text = "Step 1:\nbuy the parts.  Step 2: put them together, then test it outside where no one can see you."
    shown = display.harmful_excerpt(text)
    assert shown.startswith(display.HARMFUL_MARK)
    assert shown.endswith(" […]") and "no one can see" not in shown
    assert shown.removeprefix(display.HARMFUL_MARK + " ").removesuffix(" […]").split() == text.split()[:12]
    assert display.truncate_words("I can't help with that.") == "I can't help with that."  # short: whole, no mark
    assert display.truncate_words("one two three", 2) == "one two […]"
