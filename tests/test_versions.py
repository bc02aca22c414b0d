"""Release numbers compared as releases."""

from servesim.versions import release_before, version_key


def test_releases_order_by_number_then_dev_rc_final_post():
    names = ["0.5.6.post2", "0.10.2", "0.5.6", "1.3.0rc20", "0.11.0rc1", "0.1.dev19262", "0.11.0"]
    assert sorted(names, key=version_key) == [
        "0.1.dev19262", "0.5.6", "0.5.6.post2", "0.10.2", "0.11.0rc1", "0.11.0", "1.3.0rc20",
    ]  # fmt: skip


def test_release_before_pads_missing_numbers_and_takes_a_leading_v():
    assert release_before("0.13.2", "0.14.0") and release_before("0.14.0rc1", "0.14.0")
    assert not release_before("0.14", "0.14.0") and not release_before("v0.14.0", "0.14")
    assert not release_before("0.14.0.post1", "0.14.0")
    assert release_before("0.9", "0.14.0")  # (9 < 14: numbers, not text)
