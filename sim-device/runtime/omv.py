# omv-sim's `omv` module: board facts from the simulator's board profile.
import _omvsim


def _fw():
    parts = (_omvsim.env("FIRMWARE", "5.0.0").split(".") + ["0", "0", "0"])[:3]
    return tuple(int(p) for p in parts)


def version_major():
    return _fw()[0]


def version_minor():
    return _fw()[1]


def version_patch():
    return _fw()[2]


def version_string():
    return "%d.%d.%d" % _fw()


def arch():
    return _omvsim.env("ARCH", "OMV4P H7 32768 SDRAM")


def board_type():
    return _omvsim.env("BOARD_TYPE", "H7")


def board_id():
    return _omvsim.env("UNIQUE_ID", "000000000000000000000000").upper()


def disable_fb(disable=None):
    raise _omvsim.not_simulated("omv.disable_fb")


def __getattr__(name):
    if name.startswith("__"):
        # Python's own probes (__all__, __path__, ...): not there.
        raise AttributeError(name)
    raise _omvsim.not_simulated("omv." + name)
