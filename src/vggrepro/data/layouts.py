"""Where the images of a dataset are, and which class each one belongs to (data.source).

ilsvrc2012 (and embedded, which the generator writes in this layout):
    train/<wnid>/*.JPEG, in data.root itself or, for the Kaggle download, in
    data.root/ILSVRC/Data/CLS-LOC/. val/ is either folderised (val/<wnid>/*.JPEG) or flat
    (val/ILSVRC2012_val_<8 digits>.JPEG), labelled by LOC_val_solution.csv (Kaggle) or else by
    the devkit (ILSVRC2012_devkit_t12/data/: ILSVRC2012_validation_ground_truth.txt and
    meta.mat, as image-net.org ships them; see vggrepro.data.vallabels).
    LOC_*.csv/txt and the devkit folder are looked for in the CLS-LOC folder, in data.root, and
    in the Kaggle download's top folder (three folders above CLS-LOC), so data.root may name
    either the top folder or CLS-LOC; the devkit also beside data.root (in its parent).
    The class list: every wnid of LOC_synset_mapping.txt if found, else every leaf wnid of the
    devkit's meta.mat if found, else every train/<wnid>/ folder. A train folder the list does
    not hold stops with one line; a listed wnid without a folder stays a class (an
    `empty_class` row), so labels are those of the full list, whatever subset is on disk.
    Class names: from LOC_synset_mapping.txt, else meta.mat's words, else the wnid.
imagefolder:
    data.root/<class>/..., or data.root/train/<class>/... with, optionally, ONE val folder of
    the same classes beside it, named val/, valid/ or validation/; without one,
    data.val_fraction of each class is held out (vggrepro.data.scan). Any other folder beside
    train/ (test/, ...) stops with one line naming it: it is never read silently.
    The class list is every class folder (the "wnid" column of the manifest holds its name).

In every layout:
- an image is a file named *.jpg, *.jpeg, *.png or *.webp, in any case; the decoder reads
  the content, so a PNG named .JPEG is read as the PNG it is. Other image formats (.bmp, .gif,
  .tif, ...) are `unsupported_format` rows (excluded); other files `other_file` rows (ignored).
- names that start with "." are hidden: a hidden folder (.ipynb_checkpoints, .git) is skipped
  without a row, and is never a class, so it never shifts the labels; a hidden image file
  (macOS's ._IMG_1.jpg) is a `hidden` row (excluded); other hidden files (.DS_Store, the
  generator's marker) are skipped without a row.
- a file name that is not UTF-8 is a `bad_name` row (excluded), shown with \\x escapes; a class
  folder so named stops with one line (it cannot be left out without shifting labels).
- class folders are read recursively and links are followed, as torchvision's ImageFolder
  does: a class folder that is a link to a folder is a class like any other. A link to a
  folder on the way down from data.root (an ancestor: a loop) is a `symlink_loop` row and is
  not entered; a link that resolves to nothing or to itself is a row too.
- an image outside any class folder is an `unlabelled` row; a val class unknown to the class
  list, or a folder that cannot be listed, stops with one line naming it.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from vggrepro import paths
from vggrepro.data import vallabels
from vggrepro.data.badfiles import BadFile, from_os_error
from vggrepro.data.ingest import DatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# Image formats a user may have (torchvision's ImageFolder reads several) that are not read here.
UNSUPPORTED_SUFFIXES = (
    ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".heic", ".heif", ".avif", ".jxl", ".jp2",
)
CLS_LOC = ("ILSVRC", "Data", "CLS-LOC")  # the Kaggle download's folder holding train/ and val/
SYNSET_MAPPING = "LOC_synset_mapping.txt"
VAL_NAMES = ("val", "valid", "validation")  # an imagefolder tree's val folder, beside train/


@dataclass(frozen=True)
class Candidate:
    split: str  # "train", "val", or "" (imagefolder without val/: split by data.val_fraction)
    path: str  # relative to data.root, forward slashes
    wnid: str


@dataclass
class Layout:
    names: dict[str, str] = field(default_factory=dict)  # class -> readable name: the full class list
    folders: dict[str, str] = field(default_factory=dict)  # class -> its training folder (relative), if any
    images: list[Candidate] = field(default_factory=list)
    bad: list[BadFile] = field(default_factory=list)
    class_list: str = "the class folders"  # where the class list comes from
    train_prefix: str = ""  # the training folder, relative, with "/": where a class folder would be

    def missing_folder(self, wnid: str) -> str:
        return f"{self.train_prefix}{wnid}/"


def printable(name: str) -> str:
    """A name from the file system as UTF-8 text: undecodable bytes as \\x escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # os.scandir's surrogate escapes of undecodable bytes
        return False
    return True


Identity = tuple[int, int]  # (st_dev, st_ino) of a folder, links followed


class _Walker:
    """Lists folders below root: hidden names skipped, links followed, loops and odd entries as rows."""

    def __init__(self, root: Path, layout: Layout):
        self.root, self.layout = root, layout

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def listing(self, folder: Path, *, of_classes: bool = False) -> tuple[list[Path], list[str]]:
        """(subfolders, relative paths of image files) of folder, sorted by name; others become rows.

        of_classes: the subfolders are class folders, so a non-UTF-8 name stops with one line.
        Strings, not Paths, for the files: ILSVRC-2012 has 1.28M of them.
        """
        prefix = self.rel(folder) + "/" if folder != self.root else ""
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as err:
            reason = err.strerror or type(err).__name__
            raise DatasetError(f"{printable(str(folder))}: cannot be listed ({reason}); expected a readable folder") from None
        folders, files = [], []
        for entry in entries:
            rel = prefix + entry.name
            lower = entry.name.lower()
            if entry.name.startswith("."):
                if lower.endswith(IMAGE_SUFFIXES) and not _is_dir(entry):
                    self.layout.bad.append(BadFile(printable(rel), "hidden", "a hidden file (its name starts with '.'); not read"))
                continue
            if entry.is_symlink():
                try:
                    os.stat(entry.path)
                    # validate keeps data.root apart from the project; a link inside it must too,
                    # or the project's own figures and weights would be read as a class
                    target = os.path.realpath(entry.path)
                    taken = paths.project_part(target)
                    if taken is not None and not paths.in_dvc_cache(target):  # `dvc add`'s symlink cache is data
                        raise DatasetError(
                            f"{printable(entry.path)}: a link into the project's own files ({taken}); expected "
                            "the dataset's own folders and images"
                        )
                except OSError as err:
                    if of_classes and not lower.endswith(IMAGE_SUFFIXES):  # a class folder, as far as one can tell
                        raise DatasetError(
                            f"{printable(entry.path)}: a class folder that cannot be followed ({err.strerror or err}); "
                            "fix or remove the link (leaving the class out would shift every later label)"
                        ) from None
                    self.layout.bad.append(from_os_error(printable(rel), err))
                    continue
            is_dir = _is_dir(entry)
            if not _is_utf8(entry.name):
                if is_dir and of_classes:
                    raise DatasetError(
                        f"{printable(entry.path)}: a class folder whose name is not UTF-8; rename it "
                        f"(leaving it out would shift every later label)"
                    )
                what = "folder, not read" if is_dir else "file, not read"
                self.layout.bad.append(BadFile(printable(rel) + ("/" if is_dir else ""), "bad_name", f"a {what}: its name is not UTF-8"))
                continue
            if is_dir and lower.endswith(IMAGE_SUFFIXES):
                self.layout.bad.append(BadFile(rel + "/", "not_a_file", "a folder named like an image; not read"))
            elif is_dir:
                folders.append(Path(entry.path))
            elif lower.endswith(IMAGE_SUFFIXES):
                # Only regular files are opened: a named pipe would block the decoder forever,
                # a device (a link to /dev/zero) would be read without end. stat, not open.
                if _is_file(entry):
                    files.append(rel)
                else:
                    self.layout.bad.append(BadFile(rel, "not_a_file", f"a {_kind(entry)}, not a regular file; not read"))
            elif lower.endswith(UNSUPPORTED_SUFFIXES):
                suffix = "." + entry.name.rsplit(".", 1)[-1]
                self.layout.bad.append(
                    BadFile(rel, "unsupported_format", f"{suffix} images are not read (only {', '.join(IMAGE_SUFFIXES)})")
                )
            else:
                self.layout.bad.append(BadFile(rel, "other_file", f"not an image file ({', '.join(IMAGE_SUFFIXES)})"))
        return folders, files

    def chain(self, folder: Path) -> tuple[Identity, ...] | None:
        """The folders from root down to folder, inclusive, as identities; None (and a row) for a loop.

        A loop is a folder that is one of the folders above it on this path (a link to an
        ancestor), judged by the real folders the path goes through, not by where else a folder
        was seen: two links to one folder are two folders, as for torchvision.
        """
        parts = folder.relative_to(self.root).parts
        chain: tuple[Identity, ...] = ()
        current = self.root
        for part in ("", *parts):
            current = current / part if part else current
            try:
                st = os.stat(current)
            except OSError as err:
                self.layout.bad.append(from_os_error(self.rel(current) + "/", err))
                return None
            identity = (st.st_dev, st.st_ino)
            if identity in chain:
                self.layout.bad.append(BadFile(self.rel(current) + "/", "symlink_loop", "a link to a folder above it (a loop)"))
                return None
            chain += (identity,)
        return chain

    def images(self, folder: Path, chain: tuple[Identity, ...]) -> list[str]:
        """Every image below folder, recursively (chain: folder's, from self.chain)."""
        folders, found = self.listing(folder)
        for sub in folders:
            try:
                st = os.stat(sub)
            except OSError as err:
                self.layout.bad.append(from_os_error(self.rel(sub) + "/", err))
                continue
            identity = (st.st_dev, st.st_ino)
            if identity in chain:
                self.layout.bad.append(BadFile(self.rel(sub) + "/", "symlink_loop", "a link to a folder above it (a loop)"))
                continue
            found += self.images(sub, chain + (identity,))
        return sorted(found)

    def classes(self, folder: Path, what: str) -> list[Path]:
        """The class folders in folder; an image lying beside them has no class."""
        folders, files = self.listing(folder, of_classes=True)
        for rel in files:
            self.layout.bad.append(BadFile(rel, "unlabelled", f"an image outside the {what} folders"))
        return folders

    def add_class_images(self, folder: Path, split: str, wnid: str) -> None:
        chain = self.chain(folder)
        if chain is not None:
            self.layout.images += [Candidate(split, p, wnid) for p in self.images(folder, chain)]


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()  # follows a link; a pipe, socket or device is not a file
    except OSError:
        return False


def _kind(entry: os.DirEntry) -> str:
    """What a non-regular entry is, for its row."""
    try:
        mode = os.stat(entry.path).st_mode
    except OSError:
        return "entry that cannot be examined"
    for test, name in ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
                       (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows a link to a folder
    except OSError:
        return False


def read(root: Path, source: str) -> Layout:
    if source in ("ilsvrc2012", "embedded"):
        return ilsvrc2012(root)
    if source == "imagefolder":
        return imagefolder(root)
    raise DatasetError(f"data.source: {source!r} is not a layout; expected ilsvrc2012, imagefolder or embedded")


def _cls_loc(root: Path) -> Path:
    if (root / "train").is_dir():
        return root
    kaggle = root.joinpath(*CLS_LOC)
    if (kaggle / "train").is_dir():
        return kaggle
    raise DatasetError(
        f"{root}: no train/ folder; expected ILSVRC-2012 as train/<wnid>/ and val/, "
        f"or the Kaggle download's {'/'.join(CLS_LOC)}/train/<wnid>/"
    )


def read_paths(root: Path, source: str) -> tuple[list[Path], list[Path]]:
    """(folders, single files) that reading this source may open: what the dataset stamp
    covers (vggrepro.data.datastamp). For ILSVRC-2012, train/ and val/ and every place a label file
    is looked for, the Kaggle top folder and the devkit beside data.root included (a wnid added
    to LOC_synset_mapping.txt shifts labels), but not the rest of the download (Annotations/,
    test/): no stat of files prepare never reads."""
    if source == "imagefolder":
        return [root], []
    try:
        base = _cls_loc(root)
    except DatasetError:
        return [root], []  # prepare will say what is missing; any change under root reruns it
    label_folders = _label_folders(root, base)
    files = [f / name for f in label_folders for name in (SYNSET_MAPPING, vallabels.SOLUTION_CSV)]
    files += [
        f / vallabels.DEVKIT / "data" / name
        for f in [*label_folders, root.resolve().parent]
        for name in (vallabels.GROUND_TRUTH, vallabels.META)
    ]
    return [base / "train", base / "val"], files


def _label_folders(root: Path, base: Path) -> list[Path]:
    """Where LOC_*.csv/txt may lie, in the order they are looked for."""
    folders = [base, root]
    resolved = base.resolve()
    if resolved.parts[-3:] == CLS_LOC:
        folders.append(resolved.parents[2])  # the Kaggle download's top folder
    unique = []
    for f in folders:
        if f.resolve() not in [u.resolve() for u in unique]:
            unique.append(f)
    return unique


def _first_file(folders: list[Path], name: str) -> Path | None:
    return next((f / name for f in folders if (f / name).is_file()), None)


def read_synsets(path: Path) -> dict[str, str]:
    """wnid -> class name from LOC_synset_mapping.txt ("n01440764 tench, Tinca tinca")."""
    names = {}
    for n, line in enumerate(vallabels.read_lines(path), start=1):
        if not line.strip():
            continue
        wnid, _, name = line.partition(" ")
        if not wnid.startswith("n"):
            raise DatasetError(f"{path}:{n}: {line!r} does not start with a wnid (n########)")
        names[wnid] = name.strip()
    return names


def ilsvrc2012(root: Path) -> Layout:
    base = _cls_loc(root)
    layout = Layout()
    walker = _Walker(root, layout)
    label_folders = _label_folders(root, base)
    mapping = _first_file(label_folders, SYNSET_MAPPING)
    devkit = vallabels.find_devkit([*label_folders, root.resolve().parent])
    if mapping:
        synsets, listing = read_synsets(mapping), str(mapping)
        layout.class_list = SYNSET_MAPPING
    elif devkit and (devkit / vallabels.META).is_file():
        meta = devkit / vallabels.META
        synsets, listing = {wnid: words for wnid, words in vallabels.read_meta(meta).values()}, str(meta)
        layout.class_list = f"{vallabels.DEVKIT}/data/{vallabels.META}"
    else:
        synsets, listing = {}, ""
    train = base / "train"
    layout.train_prefix = walker.rel(train) + "/"
    for folder in walker.classes(train, "train/<wnid>"):
        wnid = folder.name
        if listing and wnid not in synsets:
            raise DatasetError(f"{folder}: {wnid!r} is not a class of {listing}; expected one of its wnids")
        layout.names[wnid] = synsets.get(wnid, wnid)
        layout.folders[wnid] = walker.rel(folder) + "/"
        walker.add_class_images(folder, "train", wnid)
    for wnid in sorted(set(synsets) - set(layout.names)):
        layout.names[wnid] = synsets[wnid]  # a class without a folder: still a class
    val = base / "val"
    if not val.is_dir():
        raise DatasetError(f"{val}: no such folder; expected val/<wnid>/ or a flat val/ with {vallabels.SOLUTION_CSV} or the devkit")
    folders, files = walker.listing(val, of_classes=True)
    if folders:
        _folderised_val(walker, folders, files)
    else:
        _flat_val(walker, val, files, label_folders, devkit, named=bool(listing))
    return layout


def _check_known(layout: Layout, wnid: str, where: str) -> None:
    if wnid not in layout.names:
        raise DatasetError(
            f"{where}: wnid {wnid!r} is not a class of the training set; expected one of the "
            f"{len(layout.names)} classes of {layout.class_list}"
        )


def _folderised_val(walker: _Walker, folders: list[Path], files: list[str]) -> None:
    for rel in files:
        walker.layout.bad.append(BadFile(rel, "unlabelled", "an image beside the val/<wnid>/ folders"))
    for folder in folders:
        _check_known(walker.layout, folder.name, str(folder))
        walker.add_class_images(folder, "val", folder.name)


def _flat_val(
    walker: _Walker, val: Path, files: list[str], label_folders: list[Path], devkit: Path | None, *, named: bool
) -> None:
    layout = walker.layout
    solution = _first_file(label_folders, vallabels.SOLUTION_CSV)
    if solution:
        labels, source = vallabels.from_solution_csv(solution), solution.name
    elif devkit:
        labels, words = vallabels.from_devkit(devkit)
        source = f"{vallabels.DEVKIT}/data/{vallabels.GROUND_TRUTH}"
        if not named:  # the devkit's words name the classes
            layout.names.update({w: words.get(w, w) for w in layout.names})
    else:
        raise DatasetError(
            f"{val}: no val/<wnid>/ folders, no {vallabels.SOLUTION_CSV} and no {vallabels.DEVKIT}/data/ "
            f"(looked in {', '.join(str(f) for f in label_folders)} and beside the data root); expected one of them"
        )
    for wnid, where in labels.values():
        _check_known(layout, wnid, where)
    stems = set()
    for rel in files:
        stem = rel.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        if stem in labels:
            stems.add(stem)
            layout.images.append(Candidate("val", rel, labels[stem][0]))
        else:
            layout.bad.append(BadFile(rel, "unlabelled", f"not listed in {source}"))
    for stem in sorted(set(labels) - set(stems)):
        layout.bad.append(BadFile(walker.rel(val / f"{stem}.JPEG"), "missing", f"labelled in {source}, no such file"))


def imagefolder(root: Path) -> Layout:
    layout = Layout()
    walker = _Walker(root, layout)
    folders, files = walker.listing(root, of_classes=True)
    by_name = {f.name: f for f in folders}
    train = by_name.get("train")
    vals = [by_name[name] for name in VAL_NAMES if name in by_name]
    if train is None:
        if vals:
            raise DatasetError(
                f"{root}: a {vals[0].name}/ folder but no train/; expected train/<class>/ beside "
                f"{vals[0].name}/<class>/, or <class>/ folders alone"
            )
        class_root, val, where = root, None, "class"
    else:
        others = [f for f in folders if f != train and f not in vals]
        if others:
            raise DatasetError(
                f"{others[0]}: a folder beside train/ that would not be read; expected train/ and at most "
                f"one val folder ({'/, '.join(VAL_NAMES)}/): move {others[0].name}/ out of data.root"
            )
        if len(vals) > 1:
            raise DatasetError(
                f"{root}: both {vals[0].name}/ and {vals[1].name}/; expected one val folder beside train/"
            )
        class_root, val, where = train, (vals[0] if vals else None), "train/<class>"
    for rel in files:
        layout.bad.append(BadFile(rel, "unlabelled", f"an image outside the {where} folders"))
    if class_root != root:
        layout.train_prefix = walker.rel(class_root) + "/"
    for folder in walker.classes(class_root, "class") if class_root != root else folders:
        layout.names[folder.name] = folder.name
        layout.folders[folder.name] = walker.rel(folder) + "/"
        walker.add_class_images(folder, "" if val is None else "train", folder.name)
    if val is not None:
        for folder in walker.classes(val, "class"):
            if folder.name not in layout.names:
                raise DatasetError(f"{folder}: class {folder.name!r} has no folder in {train}; expected one of its classes")
            walker.add_class_images(folder, "val", folder.name)
    return layout
