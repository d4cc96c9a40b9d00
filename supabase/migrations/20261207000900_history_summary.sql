-- Long histories (issue 26): a conversation's running summary of its older messages,
-- for the model's input only (the stored messages are never replaced).
--
-- `summary` covers the human/jelly messages up to `summary_through` (a message id);
-- a turn's memory is the messages after it, so the summary and the recent messages
-- come back from the call that begins the run (no round trip more before the first
-- token). The summary is refreshed after an answer, folding in only the messages
-- after `summary_through`.

alter table public.conversations
    add column if not exists summary text,
    add column if not exists summary_through bigint,
    add column if not exists summary_updated_at timestamptz;

-- jelly_begin_run as before (same signature, so jelly_start_run keeps calling it),
-- with the memory taken after `summary_through`, and the conversation's `summary` and `summary_through` in the answer.
create or replace function public.jelly_begin_run(
    p_run_id uuid,
    p_message text,
    p_memory integer default 10,
    p_timeout double precision default 120
)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
    v_run public.runs;
    v_conv public.conversations;
    v_message bigint;
    v_memory jsonb;
begin
    select * into v_run from public.runs r where r.id = p_run_id;
    if v_run.id is null then
        raise exception 'run not found' using errcode = 'JL404';
    end if;
    if v_run.status <> 'pending' then
        return jsonb_build_object('ready', false, 'stop', true, 'status', v_run.status);
    end if;
    if v_run.stop_requested then
        return jsonb_build_object('ready', false, 'stop', true, 'status', v_run.status);
    end if;
    select * into v_conv from public.conversations c where c.id = v_run.conversation_id
    for update;
    if exists (select 1 from public.runs r
               where r.conversation_id = v_run.conversation_id and r.seq < v_run.seq
                 and r.status in ('pending', 'running')) then
        return jsonb_build_object('ready', false);
    end if;
    select coalesce(jsonb_agg(jsonb_build_object('type', t.type, 'content', t.content)
                              order by t.id), '[]'::jsonb)
    into v_memory
    from (select m.id, m.type, m.content from public.chat_messages m
          where m.conversation_id = v_run.conversation_id and m.type in ('human', 'jelly')
            and m.id > coalesce(v_conv.summary_through, 0)
          order by m.id desc limit greatest(p_memory, 0)) t;
    update public.runs set status = 'running', started_at = clock_timestamp(),
        deadline_at = clock_timestamp() + make_interval(secs => p_timeout)
    where id = p_run_id;
    insert into public.chat_messages (user_id, conversation_id, run_id, type, content, application)
    values (v_run.user_id, v_run.conversation_id, p_run_id, 'human', p_message, v_run.application)
    returning id into v_message;
    update public.conversations set updated_at = clock_timestamp() where id = v_run.conversation_id;
    return jsonb_build_object('ready', true, 'message_id', v_message, 'memory', v_memory,
        'summary', v_conv.summary, 'summary_through', v_conv.summary_through,
        'titled', v_conv.title is not null or v_conv.title_by_user);
end;
$$;

-- What a summary refresh reads: the summary so far and the human/jelly messages after
-- it, oldest first (at most p_limit, the newest).
create or replace function public.jelly_history_after_summary(p_id uuid, p_limit integer default 200)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select jsonb_build_object(
        'summary', c.summary,
        'summary_through', c.summary_through,
        'messages', (
            select coalesce(jsonb_agg(jsonb_build_object('id', t.id, 'type', t.type,
                                                         'content', t.content)
                                      order by t.id), '[]'::jsonb)
            from (select m.id, m.type, m.content from public.chat_messages m
                  where m.conversation_id = c.id and m.type in ('human', 'jelly')
                    and m.id > coalesce(c.summary_through, 0)
                  order by m.id desc limit greatest(p_limit, 0)) t))
    from public.conversations c where c.id = p_id
$$;

-- Store a refreshed summary covering the messages up to p_through, unless another
-- refresh moved the summary since it was read (p_previous: the summary_through it
-- read) or p_through is not past it. True when stored.
create or replace function public.jelly_set_summary(
    p_id uuid, p_summary text, p_through bigint, p_previous bigint default null
)
returns boolean
language plpgsql
set search_path = ''
as $$
begin
    update public.conversations c set summary = p_summary, summary_through = p_through,
        summary_updated_at = clock_timestamp()
    where c.id = p_id and c.summary_through is not distinct from p_previous
      and p_through > coalesce(p_previous, 0);
    return found;
end;
$$;

-- jelly_get_conversation as before, with the conversation's `summary`.
create or replace function public.jelly_get_conversation(
    p_token text, p_id uuid default null, p_limit integer default null
)
returns jsonb
language sql
stable
set search_path = ''
as $$
    select public.jelly_conversation_json(c.id) || jsonb_build_object(
        'user_id', c.user_id,
        'summary', c.summary,
        'messages', (
            select coalesce(jsonb_agg(jsonb_build_object(
                'id', t.id, 'type', t.type, 'content', t.content, 'created', t.created_at,
                'application', t.application, 'run_id', t.run_id, 'run_status', t.status,
                'sources', coalesce(t.sources, '[]'::jsonb), 'tool_call', t.tool_call
            ) order by t.id), '[]'::jsonb)
            from (select m.*, r.status from public.chat_messages m
                  left join public.runs r on r.id = m.run_id
                  where m.conversation_id = c.id
                  order by m.id desc limit p_limit) t))
    from public.conversations c join public.users u on u.id = c.user_id
    where u.token = p_token and (c.id = p_id or (p_id is null and c.is_default))
$$;

select public.jelly_server_only(array[
        'public.jelly_begin_run(uuid, text, integer, double precision)',
        'public.jelly_history_after_summary(uuid, integer)',
        'public.jelly_set_summary(uuid, text, bigint, bigint)',
        'public.jelly_get_conversation(text, uuid, integer)'
    ]);

notify pgrst, 'reload schema';
