from fastapi import APIRouter

router = APIRouter(prefix="/api/logs", tags=["ops: logs"])
