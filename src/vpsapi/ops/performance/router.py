from fastapi import APIRouter

router = APIRouter(prefix="", tags=["ops: performance and task queue"])
