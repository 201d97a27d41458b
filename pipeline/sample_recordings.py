"""Recordings of our own: one known workout written as FIT, GPX, TCX and CSV.

Tests, ``livecoach analyze`` and a newcomer's first try need recordings, and the team's
shared reference recordings (:func:`pipeline.recordings.shared_recordings_dir`) are not
in every clone. :func:`write_samples` writes the same workout in the four formats
:mod:`pipeline.recordings` reads, and :data:`FIGURES` holds what any correct reading
and summary of it must give, worked out by hand from the workout's definition:

- 30 minutes at 1 Hz (1,800 samples from 2026-01-01T00:00:00Z), steady 200 W at
  90 rpm and 8 m/s on the flat (100 m), heading due north;
- heart rate 140 bpm for the first half, 147 bpm for the second: cardiac drift at
  constant output, so decoupling is ``100 * (1 - 140 / 147)`` = 4.76 %.

The FIT writer is the few lines of the FIT protocol one file needs (a header, a
``file_id`` and ``record`` messages, the CRC); the FIT SDK is not a Python package and
``fitdecode`` only reads. GPX carries no speed or distance: positions are spaced so
that gpxpy's flat-earth distance between points is 8 m.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from pipeline.recordings import CSV_RELATIVE_EPOCH_S

START_S = CSV_RELATIVE_EPOCH_S  # 2026-01-01T00:00:00Z
DURATION_S = 1800
POWER_W = 200
CADENCE_RPM = 90
SPEED_M_S = 8.0
ALTITUDE_M = 100.0
HR_FIRST_HALF_BPM = 140
HR_SECOND_HALF_BPM = 147
#: Where the GPX track starts (heading due north from there).
START_LAT, START_LON = 45.0, 6.0

#: File name (without extension) of the workout in every format.
NAME = "steady_ride_hr_drift"


@dataclass(frozen=True)
class Figures:
    samples: int
    duration_s: float
    distance_m: float
    mean_hr: float
    max_hr: int
    mean_power: float
    np: float
    decoupling_pct: float


#: What a summary of the workout must say (any format).
FIGURES = Figures(
    samples=DURATION_S,
    duration_s=DURATION_S - 1,
    distance_m=SPEED_M_S * (DURATION_S - 1),
    mean_hr=(HR_FIRST_HALF_BPM + HR_SECOND_HALF_BPM) / 2,
    max_hr=HR_SECOND_HALF_BPM,
    mean_power=POWER_W,
    np=POWER_W,  # constant power: every rolling mean is 200 W
    decoupling_pct=100.0 * (1 - HR_FIRST_HALF_BPM / HR_SECOND_HALF_BPM),
)


@dataclass(frozen=True)
class _Point:
    t: float
    heart_rate: int
    power_w: int
    cadence: int
    speed_m_s: float
    distance_m: float
    altitude_m: float


def workout() -> list[_Point]:
    """The workout, one point a second."""
    return [
        _Point(
            t=START_S + i,
            heart_rate=HR_FIRST_HALF_BPM if i < DURATION_S // 2 else HR_SECOND_HALF_BPM,
            power_w=POWER_W,
            cadence=CADENCE_RPM,
            speed_m_s=SPEED_M_S,
            distance_m=SPEED_M_S * i,
            altitude_m=ALTITUDE_M,
        )
        for i in range(DURATION_S)
    ]


def write_samples(folder: Path) -> list[Path]:
    """Write the workout as ``<NAME>.fit``, ``.gpx``, ``.tcx`` and ``.csv`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    points = workout()
    paths = []
    for suffix, writer in (("fit", _fit), ("gpx", _gpx), ("tcx", _tcx), ("csv", _csv)):
        path = folder / f"{NAME}.{suffix}"
        data = writer(points)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        paths.append(path)
    return paths


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- FIT -------------------------------------------------------------------------------

_FIT_EPOCH_S = 631_065_600  # 1989-12-31T00:00:00Z
_CRC_TABLE = (0x0000, 0xCC01, 0xD801, 0x1400, 0xF001, 0x3C00, 0x2800, 0xE401,
              0xA001, 0x6C00, 0x7800, 0xB401, 0x5000, 0x9C01, 0x8801, 0x4400)  # fmt: skip
# (field number, size, base type, struct code): FIT profile numbers of ``record``.
_RECORD_FIELDS = (
    (253, 4, 0x86, "I"),  # timestamp, s since the FIT epoch
    (3, 1, 0x02, "B"),  # heart_rate, bpm
    (4, 1, 0x02, "B"),  # cadence, rpm
    (7, 2, 0x84, "H"),  # power, W
    (6, 2, 0x84, "H"),  # speed, m/s * 1000
    (5, 4, 0x86, "I"),  # distance, m * 100
    (2, 2, 0x84, "H"),  # altitude, (m + 500) * 5
)


def _crc(data: bytes, crc: int = 0) -> int:
    for byte in data:
        for nibble in (byte & 0xF, byte >> 4):
            tmp = _CRC_TABLE[crc & 0xF]
            crc = (crc >> 4) & 0x0FFF
            crc = crc ^ tmp ^ _CRC_TABLE[nibble]
    return crc


def _definition(local: int, global_number: int, fields: tuple[tuple[int, int, int], ...]) -> bytes:
    out = struct.pack("<BBBHB", 0x40 | local, 0, 0, global_number, len(fields))
    return out + b"".join(struct.pack("<BBB", *f) for f in fields)


def _fit(points: list[_Point]) -> bytes:
    created = int(points[0].t) - _FIT_EPOCH_S
    body = bytearray()
    # file_id: type activity (4), manufacturer development (255), time_created.
    body += _definition(0, 0, ((0, 1, 0x00), (1, 2, 0x84), (4, 4, 0x86)))
    body += struct.pack("<BBHI", 0, 4, 255, created)
    body += _definition(1, 20, tuple(f[:3] for f in _RECORD_FIELDS))
    layout = "<B" + "".join(f[3] for f in _RECORD_FIELDS)
    for p in points:
        body += struct.pack(
            layout, 1, int(p.t) - _FIT_EPOCH_S, p.heart_rate, p.cadence, p.power_w,
            round(p.speed_m_s * 1000), round(p.distance_m * 100), round((p.altitude_m + 500) * 5),
        )  # fmt: skip
    header = struct.pack("<BBHI4s", 14, 0x20, 2132, len(body), b".FIT")
    header += struct.pack("<H", _crc(header))
    return header + bytes(body) + struct.pack("<H", _crc(header + body))


# --- GPX, TCX, CSV ---------------------------------------------------------------------


def _gpx(points: list[_Point]) -> str:
    from gpxpy.geo import ONE_DEGREE  # metres per degree in gpxpy's short-distance formula

    rows = []
    for i, p in enumerate(points):
        lat = START_LAT + i * SPEED_M_S / ONE_DEGREE
        rows.append(
            f'<trkpt lat="{lat:.9f}" lon="{START_LON:.9f}"><ele>{p.altitude_m}</ele>'
            f"<time>{_iso(p.t)}</time><extensions><power>{p.power_w}</power>"
            f"<gpxtpx:TrackPointExtension><gpxtpx:hr>{p.heart_rate}</gpxtpx:hr>"
            f"<gpxtpx:cad>{p.cadence}</gpxtpx:cad></gpxtpx:TrackPointExtension>"
            "</extensions></trkpt>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<gpx version="1.1" creator="livecoach" xmlns="http://www.topografix.com/GPX/1/1" '
        'xmlns:gpxtpx="http://www.garmin.com/xmlschemas/TrackPointExtension/v1">\n'
        f"<trk><name>{NAME}</name><type>cycling</type><trkseg>\n"
        + "\n".join(rows)
        + "\n</trkseg></trk></gpx>\n"
    )


def _tcx(points: list[_Point]) -> str:
    rows = [
        f"<Trackpoint><Time>{_iso(p.t)}</Time><AltitudeMeters>{p.altitude_m}</AltitudeMeters>"
        f"<DistanceMeters>{p.distance_m}</DistanceMeters>"
        f"<HeartRateBpm><Value>{p.heart_rate}</Value></HeartRateBpm>"
        f"<Cadence>{p.cadence}</Cadence><Extensions><ns3:TPX><ns3:Speed>{p.speed_m_s}"
        f"</ns3:Speed><ns3:Watts>{p.power_w}</ns3:Watts></ns3:TPX></Extensions></Trackpoint>"
        for p in points
    ]
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<TrainingCenterDatabase "
        'xmlns="http://www.garmin.com/xmlschemas/TrainingCenterDatabase/v2" '
        'xmlns:ns3="http://www.garmin.com/xmlschemas/ActivityExtension/v2">\n'
        f'<Activities><Activity Sport="Biking"><Id>{_iso(points[0].t)}</Id>'
        f'<Lap StartTime="{_iso(points[0].t)}"><Track>\n'
        + "\n".join(rows)
        + "\n</Track></Lap></Activity></Activities></TrainingCenterDatabase>\n"
    )


def _csv(points: list[_Point]) -> str:
    lines = ["t,heart_rate,power,speed,cadence,distance,altitude"]
    lines += [
        f"{p.t - START_S:g},{p.heart_rate},{p.power_w},{p.speed_m_s},{p.cadence},"
        f"{p.distance_m},{p.altitude_m}"
        for p in points
    ]
    return "\n".join(lines) + "\n"
