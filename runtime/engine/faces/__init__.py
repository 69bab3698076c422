"""Face geometry for MuseTalk v1.5: where the face is (S3FD + DWPose + the landmark box rule)
and how the generated face is blended back (BiSeNet parsing masks). Spec §3 and §6."""

from runtime.engine.faces.boxes import FaceBox
from runtime.engine.faces.locator import FaceLocator
from runtime.engine.faces.parsing import BlendMask, FaceParser

__all__ = ["BlendMask", "FaceBox", "FaceLocator", "FaceParser"]
