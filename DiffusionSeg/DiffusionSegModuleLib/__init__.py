"""Qt-free parts of the DiffusionSeg Slicer module.

Everything here imports without qt, ctk or a running Slicer application, so it can be
tested with the ``slicer-core`` package (Slicer's MRML library as a wheel):

- ``i18n``: the translation function, falling back to identity outside Slicer.
- ``progress``: the backend's JSON progress events, parsed and summarised.
- ``process``: the cancellable background ``diffusionseg`` process.
- ``projectfolder``: the project folder (project.json, images/, labels/, models/, runs/).
- ``nodeio``: MRML nodes <-> the project's files (.nrrd, .seg.nrrd, .mrk.json).
- ``corelogic``: the module's Logic without Qt; DiffusionSegLogic adds the Slicer parts.
"""
