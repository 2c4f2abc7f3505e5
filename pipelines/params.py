"""Flow parameters as a pydantic model: the typed edge that Prefect renders as a form.

Loose input (bbox strings, GeoJSON files, ISO dates) is parsed here once into a frozen ``MonitorConfig``,
and everything that can be checked without a service is checked here, before a run starts: the AOI, the
dates, the target grid (CRS, size), the model and whether it fits the grid, the asset stores. A bad value
fails as one ``InputError`` (or ``ModelError``) line, never inside the flow.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator, model_validator

from eowatch.errors import InputError, ModelError, redact
from eowatch.pipelines.search_request import check_lonlat_bbox, parse_bbox
from eowatch.pipelines.spec import ChangeSpec, MonitorConfig, Precision


def check_stac_url(url: str) -> str:
    """Validate a STAC API root URL: ``http(s)://host[:port][/path]``. Credentials in it are allowed
    (and never shown: messages redact them).

    Raises:
        InputError: no scheme, another scheme (``ftp://``), or no host.
    """
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InputError(f"STAC API URL {redact(url)!r} must be an http:// or https:// URL with a host")
    return url.strip()


def check_collection_id(value: str, what: str) -> str:
    """A non-empty STAC collection id without whitespace.

    Raises:
        InputError: empty or containing whitespace.
    """
    if not value or not value.strip() or any(c.isspace() for c in value):
        raise InputError(f"{what} collection id {value!r} must be a non-empty id without spaces")
    return value


def check_model(name: str, variables: tuple[str, ...], resolution_m: float) -> None:
    """The model ``name`` is registered, shipped, and fits a cube of ``variables`` at ``resolution_m``.

    Reads the model card only (no weights are loaded).

    Raises:
        ModelError: unknown model, card not shipped, or the cube lacks bands / has another resolution.
    """
    from eowatch.models.card import ModelCard
    from eowatch.models.predict import SEMANTIC_TASK, check_inputs
    from eowatch.models.registry import MODELS, card_file_of

    card_file = card_file_of(name)
    if not card_file.is_file():
        raise ModelError(f"model {name!r} is registered but its card {card_file} is not shipped")
    card = ModelCard.read(card_file)
    if card.task not in ("change-detection", SEMANTIC_TASK):  # a semantic model gets its own message
        known = [
            m
            for m, f in sorted(MODELS.items())
            if f.is_file() and ModelCard.read(f).task == "change-detection"
        ]
        raise ModelError(
            f"model {name!r} is a {card.task} model, not a change-detection model; "
            f"change models: {', '.join(known) or 'none'}"
        )
    check_inputs(card, variables, resolution_m)


def resolve_gap_model(gap_model: str | None, model: str) -> str | None:
    """The gap model a run uses: ``auto`` is the change model's shipped gap model (``models.registry.
    GAP_MODELS``; none when it has none or reads no S1), empty or None is none, else the name given."""
    if not gap_model:
        return None
    if gap_model != "auto":
        return gap_model
    from eowatch.models.card import S1_BANDS, ModelCard
    from eowatch.models.registry import GAP_MODELS, card_file_of

    partner = GAP_MODELS.get(model)
    if partner is None or not card_file_of(partner).is_file() or not card_file_of(model).is_file():
        return None
    reads_s1 = any(b in S1_BANDS for b in ModelCard.read(card_file_of(model)).bands)
    return partner if reads_s1 else None


def check_gap_model(name: str, model: str) -> None:
    """The gap model ``name`` is a shipped change-detection model that reads exactly the change model
    ``model``'s bands (it runs on the same window), and ``model`` reads S1. Reads cards only.

    Raises:
        ModelError: unknown or unshipped, another task, other bands, or a change model without S1.
    """
    from eowatch.models.card import S1_BANDS

    card = _card_of_task(name, "change-detection", "change-detection")
    main = _card_of_task(model, card.task, "change-detection")
    if card.bands != main.bands:
        raise ModelError(
            f"gap model {name!r} reads bands {', '.join(card.bands)}; the change model {model!r} reads "
            f"{', '.join(main.bands)}: a gap model must read the change model's bands"
        )
    if not any(b in S1_BANDS for b in main.bands):
        raise ModelError(f"change model {model!r} reads no S1 band: a gap model has no S1 gap to fill")


def check_crop_model(name: str, spec: Any) -> None:
    """The crop-type model ``name`` is registered, shipped, a crop-type model, and fits the cube ``spec``
    (bands, resolution, at least one period in a month it was trained on). Reads the card only.

    Raises:
        ModelError: unknown model, card not shipped, not a crop-type model, or a mismatch it names.
    """
    from eowatch.models.card import ModelCard
    from eowatch.models.croptype import check_croptype_inputs
    from eowatch.models.registry import card_file_of

    card_file = card_file_of(name)
    if not card_file.is_file():
        raise ModelError(f"model {name!r} is registered but its card {card_file} is not shipped")
    months = [int(str(a)[5:7]) for a, _ in spec.periods]
    check_croptype_inputs(ModelCard.read(card_file), spec.variables, spec.grid.resolution, months)


def check_vhr_change_model(name: str, vhr_collection: str | None) -> None:
    """The VHR change model ``name`` is registered, shipped, a VHR change model whose bands the VHR cube
    has, and the run has a VHR collection to run it on. Reads the card only (the pixel size is checked
    against the VHR cube when the stage starts: it comes from the items).

    Raises:
        ModelError: unknown model, card not shipped, a model of another task, or bands the VHR cube lacks.
        InputError: no VHR collection.
    """
    from eowatch.models.card import ModelCard
    from eowatch.models.registry import MODELS, card_file_of
    from eowatch.models.vhr_change import VHR_TASK
    from eowatch.pipelines.vhr import VHR_BANDS

    card_file = card_file_of(name)
    if not card_file.is_file():
        raise ModelError(f"model {name!r} is registered but its card {card_file} is not shipped")
    card = ModelCard.read(card_file)
    if card.task != VHR_TASK:
        known = [m for m, f in sorted(MODELS.items()) if f.is_file() and ModelCard.read(f).task == VHR_TASK]
        raise ModelError(
            f"model {name!r} is a {card.task} model, not a VHR change model; "
            f"VHR change models: {', '.join(known) or 'none'}"
        )
    missing = [b for b in card.bands if b not in VHR_BANDS]
    if missing:
        raise ModelError(
            f"VHR change model {name!r} needs bands {', '.join(missing)} that the VHR cube lacks "
            f"(it has: {', '.join(VHR_BANDS)})"
        )
    if not vhr_collection:
        raise InputError(
            f"the VHR change model {name!r} needs a VHR collection to run on (vhr_collection, "
            "--vhr-collection)"
        )


def _card_of_task(name: str, task: str, what: str) -> Any:
    """The shipped card of the registered model ``name``, checked to be a model of ``task`` (``what``: the
    task in words, for the message, which lists the shipped models of that task).

    Raises:
        ModelError: unknown model, card not shipped, or a model of another task.
    """
    from eowatch.models.card import ModelCard
    from eowatch.models.registry import MODELS, card_file_of

    card_file = card_file_of(name)
    if not card_file.is_file():
        raise ModelError(f"model {name!r} is registered but its card {card_file} is not shipped")
    card = ModelCard.read(card_file)
    if card.task != task:
        known = [m for m, f in sorted(MODELS.items()) if f.is_file() and ModelCard.read(f).task == task]
        raise ModelError(
            f"model {name!r} is a {card.task} model, not a {what} model; {what} models: "
            f"{', '.join(known) or 'none shipped'}"
        )
    return card


def check_landcover_model(name: str, spec: Any) -> None:
    """The land-cover model ``name`` is registered, shipped, a land-cover model, and fits the cube
    ``spec`` (its S2 bands, its resolution in metres). Reads the card only.

    Raises:
        ModelError: unknown model, card not shipped, a model of another task, or a mismatch it names.
    """
    from eowatch.models.landcover import LANDCOVER_TASK, check_landcover_inputs

    card = _card_of_task(name, LANDCOVER_TASK, "land-cover")
    check_landcover_inputs(card, spec.variables, spec.grid.resolution)


def check_semantic_change_model(name: str, spec: Any) -> None:
    """The semantic change model ``name`` is registered, shipped, a semantic change model, and fits the
    cube ``spec`` (bands, resolution; a conditional one also needs its condition model). Reads cards only.

    Raises:
        ModelError: unknown model, card not shipped, a model of another task, or a mismatch it names.
    """
    from eowatch.models.predict import SEMANTIC_TASK
    from eowatch.pipelines.semantic_change import check_semantic_change_model as check_cube

    _card_of_task(name, SEMANTIC_TASK, "semantic change")
    check_cube(name, spec)


def check_vhr_landcover_model(name: str, vhr_collection: str | None) -> None:
    """The VHR land-cover model ``name`` is registered, shipped, a VHR land-cover model whose bands the
    VHR cube has, and the run has a VHR collection to run it on. Reads the card only (the pixel size is
    checked against the VHR cube when the plan and the stage run: it comes from the items).

    Raises:
        ModelError: unknown model, card not shipped, a model of another task, or bands the VHR cube lacks.
        InputError: no VHR collection.
    """
    from eowatch.models.vhr_landcover import VHR_LANDCOVER_TASK
    from eowatch.pipelines.vhr import VHR_BANDS

    card = _card_of_task(name, VHR_LANDCOVER_TASK, "VHR land-cover")
    missing = [b for b in card.bands if b not in VHR_BANDS]
    if missing:
        raise ModelError(
            f"VHR land-cover model {name!r} needs bands {', '.join(missing)} that the VHR cube lacks "
            f"(it has: {', '.join(VHR_BANDS)})"
        )
    if not vhr_collection:
        raise InputError(
            f"the VHR land-cover model {name!r} needs a VHR collection to run on (vhr_collection, "
            "--vhr-collection)"
        )


class MonitorParams(BaseModel):
    """Parameters of one monitoring run."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stac_url: str = Field(description="STAC API root URL, e.g. https://earth-search.aws.element84.com/v1")
    start: dt.date = Field(description="First day of the monitoring period")
    end: dt.date = Field(description="Last day of the monitoring period (inclusive)")
    out: str = Field(description="Output folder; the change cube is written to <out>/change.zarr")
    bbox: tuple[float, float, float, float] | None = Field(
        None, description="AOI as lon/lat bounds: min_lon, min_lat, max_lon, max_lat"
    )
    geojson: dict[str, Any] | None = Field(None, description="AOI as a GeoJSON geometry/Feature (EPSG:4326)")
    crs: str | None = Field(None, description="Target CRS (default: UTM zone of the AOI)")
    bounds: tuple[float, float, float, float] | None = Field(
        None, description="Target grid bounds in the target CRS (default: the AOI projected)"
    )
    resolution: float = Field(10.0, gt=0, description="Target pixel size in metres")
    chunk: int = Field(256, ge=16, le=4096, description="Spatial chunk edge in pixels")
    max_cloud_cover: float | None = Field(90.0, ge=0, le=100, description="Max scene cloud cover (%)")
    s2_collection: str = "sentinel-2-l2a"
    s1_collection: str | None = "sentinel-1-grd"
    vhr_collection: str | None = Field(None, description="Optional VHR collection (nested grid)")
    model: str = Field("siamese-s2s1-change", description="Change model name (see `eowatch models`)")
    threshold: float | None = Field(
        None, gt=0, lt=1, description="Change probability threshold (default: the model card's)"
    )
    gap_model: str | None = Field(
        "auto",
        description="Model for the pixel-transitions where a date has no S1 observation (auto: the change "
        "model's gap model, siamese-s2s1-gap-change for siamese-s2s1-change; empty: none)",
    )
    precision: Precision = Field(
        "auto",
        description="Change-model inference precision: auto is float32 on CPU and bf16 autocast on CUDA; "
        "bfloat16 on CPU is ~2x faster where the CPU has bf16 instructions and moves a few pixels "
        "(docs/performance.md)",
    )
    crop_model: str | None = Field(
        None, description="Optional crop-type model mapped over the season, e.g. crop-type-ltae"
    )
    vhr_change_model: str | None = Field(
        None,
        description="Optional VHR change model run over consecutive VHR dates, e.g. siamese-vhr-change "
        "(needs vhr_collection)",
    )
    landcover_model: str | None = Field(
        None, description="Optional land-cover model mapped over each period, e.g. landcover-s2-unet"
    )
    vhr_landcover_model: str | None = Field(
        None,
        description="Optional VHR land-cover model mapped over each VHR date, e.g. landcover-vhr-unet "
        "(needs vhr_collection)",
    )
    semantic_change_model: str | None = Field(
        None,
        description="Optional semantic change model (change with its from/to land cover) run over "
        "consecutive periods, e.g. siamese-s2s1-semantic",
    )
    truth_dir: str | None = Field(None, description="Planted-truth folder to score the run against")
    asset_stores: tuple[str, ...] = Field(
        (),
        description="URL prefixes asset hrefs must lie under, e.g. https://data.example.org/cogs/ "
        "(default: any http(s):// or s3:// href, never local files)",
    )

    @field_serializer("stac_url", "asset_stores", when_used="json")
    def _redact(self, v: str | tuple[str, ...]) -> str | list[str]:
        """The JSON form, which Prefect stores and shows as the flow run's parameters, never carries
        credentials: they are replaced by ``***`` (in-process runs keep the real URL; a run retried from
        the UI then fails to authenticate, so give secrets through the environment, e.g. a region's
        ``${VAR}``)."""
        return redact(v) if isinstance(v, str) else [redact(p) for p in v]

    @field_validator("bbox", mode="before")
    @classmethod
    def _check_bbox(cls, v: Any) -> tuple[float, float, float, float] | None:
        """Any 4 numbers (or a ``"min_lon,min_lat,max_lon,max_lat"`` string), checked by the one bbox rule."""
        if v is None:
            return None
        return check_lonlat_bbox(parse_bbox(v) if isinstance(v, str) else v)

    @field_validator("stac_url")
    @classmethod
    def _check_stac_url(cls, v: str) -> str:
        return check_stac_url(v)

    @field_validator("s2_collection", "s1_collection", "vhr_collection")
    @classmethod
    def _check_collection(cls, v: str | None, info: Any) -> str | None:
        return None if v is None else check_collection_id(v, info.field_name.removesuffix("_collection"))

    @field_validator("asset_stores")
    @classmethod
    def _check_stores(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        from eowatch.pipelines.reader import normalize_store

        return tuple(dict.fromkeys(normalize_store(p) for p in v))

    @field_validator("truth_dir")
    @classmethod
    def _check_truth(cls, v: str | None) -> str | None:
        if v is not None and not Path(v).is_dir():
            raise InputError(f"truth folder {v} does not exist")
        return v

    @model_validator(mode="after")
    def _check(self) -> MonitorParams:
        if (self.bbox is None) == (self.geojson is None):
            raise InputError("give exactly one AOI: bbox or geojson")
        if self.end < self.start:
            raise InputError(f"end date {self.end} is before start date {self.start}")
        today = dt.datetime.now(dt.UTC).date()
        if self.start > today:
            raise InputError(
                f"start date {self.start} is in the future (today is {today}): nothing to monitor"
            )
        spec = self.to_config().cube_spec()  # grid, CRS, size and periods, before any service is touched
        check_model(self.model, spec.variables, spec.grid.resolution)
        gap_model = resolve_gap_model(self.gap_model, self.model)
        if gap_model is not None:
            check_gap_model(gap_model, self.model)
        if self.crop_model is not None:
            check_crop_model(self.crop_model, spec)
        if self.vhr_change_model is not None:
            check_vhr_change_model(self.vhr_change_model, self.vhr_collection)
        if self.landcover_model is not None:
            check_landcover_model(self.landcover_model, spec)
        if self.vhr_landcover_model is not None:
            check_vhr_landcover_model(self.vhr_landcover_model, self.vhr_collection)
        if self.semantic_change_model is not None:
            check_semantic_change_model(self.semantic_change_model, spec)
        return self

    def to_config(self) -> MonitorConfig:
        """The run as frozen data (the GeoJSON AOI parsed into a geometry and its bounds)."""
        intersects = None
        bbox = self.bbox
        if self.geojson is not None:
            from eowatch.pipelines.search import SearchRequest

            req = SearchRequest.parse(
                geojson=self.geojson, start=self.start, end=self.end, collections=[self.s2_collection]
            )
            intersects = req.intersects
            from shapely.geometry import shape

            bbox = tuple(shape(intersects).bounds)  # type: ignore[assignment]
        assert bbox is not None
        return MonitorConfig(
            stac_url=self.stac_url,
            bbox=bbox,
            start=self.start,
            end=self.end,
            out=self.out,
            intersects=intersects,
            crs=self.crs,
            bounds=self.bounds,
            resolution=self.resolution,
            chunk=self.chunk,
            max_cloud_cover=self.max_cloud_cover,
            s2_collection=self.s2_collection,
            s1_collection=self.s1_collection,
            vhr_collection=self.vhr_collection,
            change=ChangeSpec(
                model=self.model,
                threshold=self.threshold,
                precision=self.precision,
                gap_model=resolve_gap_model(self.gap_model, self.model),
            ),
            crop_model=self.crop_model,
            vhr_change_model=self.vhr_change_model,
            landcover_model=self.landcover_model,
            vhr_landcover_model=self.vhr_landcover_model,
            semantic_change_model=self.semantic_change_model,
            truth_dir=self.truth_dir,
            asset_stores=self.asset_stores,
        )


def parse_params(**kwargs: Any) -> MonitorParams:
    """Build MonitorParams, turning pydantic's validation report into one-line InputErrors."""
    from pydantic import ValidationError

    if isinstance(kwargs.get("geojson"), str | Path):
        path = Path(kwargs["geojson"])
        try:
            kwargs["geojson"] = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot read GeoJSON {path}: {exc}") from None
    try:
        return MonitorParams(**kwargs)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a rule across fields: its message names them
            raise InputError(msg) from None
        raise InputError(f"invalid {err['loc'][0]}: {msg}") from None
