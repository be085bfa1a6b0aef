"""People's free text as the portal and email show it: nothing invisible, no forged lines."""

from broker.text import indented, visible


def test_visible_drops_bidi_controls_zero_width_and_control_characters():
    assert visible("a\u202eb\u2066c\u200bd\u200de\u00adf\x1b[0mg\x07\x00h") == "abcdef[0mgh"


def test_visible_keeps_letters_of_every_script_and_emoji():
    assert visible("Zoë, Ольга, 李, שלום, 👩\u200d💻") == "Zoë, Ольга, 李, שלום, 👩💻"


def test_every_kind_of_line_break_becomes_a_newline():
    assert visible("a\r\nb\rc\x85d\u2028e\u2029f\x0bg") == "a\nb\nc\nd\ne\nf\ng"


def test_indented_puts_every_line_after_the_first_in_from_the_margin():
    assert indented("disk full\nTicket: X\n\nStage: 1") == "disk full\n    Ticket: X\n    \n    Stage: 1"


def test_nothing_and_none_are_empty():
    assert visible(None) == "" and indented("") == ""
